"""Encoders (hub id, local folder, the offline default), heads per task kind."""

"""Reading raw formats into typed examples, validation, featurization and batching."""

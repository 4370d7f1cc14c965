"""Code-generation tasks (NL → code) as intermediate tasks and evaluation sets."""

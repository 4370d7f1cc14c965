"""Reading raw formats into typed examples, validation, featurization and batching."""

# The intermediate and code tasks' readers register themselves with xstilts.data.readers.
from xstilts.data import code_readers, nlu_readers  # noqa: E402,F401

//! End-to-end scenarios live under `tests/tests/`.

//! `.dockerignore` handling (being written).

//! Offline trainer for the built-in models (native only).

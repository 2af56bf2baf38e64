//! LD_PRELOAD interposer (not built yet).

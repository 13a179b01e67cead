//! The deterministic simulator of chorus (being written).

//! Session layer (placeholder while being written).

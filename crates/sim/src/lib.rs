//! The venue simulator behind `tollgate sim` (being written).

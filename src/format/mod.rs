//! The fixture format: reading and writing fixture files, and the value encodings between
//! PostgreSQL's text forms and JSON.

pub mod bytes;
pub mod copy_binary;
pub mod copy_structured;
pub mod copy_text;
pub mod django;
pub mod reader;
pub mod structural;
pub mod value;
pub mod writer;

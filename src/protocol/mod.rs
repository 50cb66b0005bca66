//! API protocols: how a prompt becomes a request body and how a response payload is
//! read. One module per API kind.

pub mod chunk;
pub mod openai;

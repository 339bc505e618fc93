//! The peer benchmark's parts: a broker-independent load generator (`load`), the two brokers it
//! drives behind the same traits (`mom`, `rabbitmq`), and the final table (`report`); and
//! MOM's own rows: publish→deliver over SSE and gRPC streams (`latency`) and batch publishes
//! (`batches`).

pub mod batches;
pub mod latency;
pub mod load;
pub mod mom;
pub mod rabbitmq;
pub mod report;

//! The peer benchmark's parts: a broker-independent load generator (`load`), the two brokers it
//! drives behind the same traits (`mom`, `rabbitmq`), and the final table (`report`); and
//! MOM's own publish→deliver row over SSE (`latency`).

pub mod latency;
pub mod load;
pub mod mom;
pub mod rabbitmq;
pub mod report;

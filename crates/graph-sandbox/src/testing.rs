//! The pieces of the sandbox that integration tests drive directly, beyond [`crate::start`]:
//! the `$batch` layer over an arbitrary router, the throttling model, fault injection, the
//! deterministic tenant generator and the seed's password hashing. Not for production use; kept
//! apart so that the crate's everyday surface stays small.

pub use crate::batch::{
    batch_routes, BatchRequest, BatchRequestEnvelope, BatchResponse, BatchResponseEnvelope,
    InBatch, MAX_BATCH_REQUESTS,
};
pub use crate::faults::{fault_middleware, FaultInjector, FaultSpec, Latency};
pub use crate::generate::generate;
pub use crate::password::{acceptable as password_acceptable, system_generated};
pub use crate::seed::password_hash;
pub use crate::throttle::{
    cost, too_many_requests_body, Admission, ThrottleKey, ThrottleMode, Throttler,
};

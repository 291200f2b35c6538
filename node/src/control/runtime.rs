//! The etcd thread. (Being implemented: see issue 8.)

use super::handle::{ControlError, ControlHandle};
use super::types::ControlConfig;

pub(super) fn start(config: ControlConfig) -> Result<ControlHandle, ControlError> {
    Err(ControlError::Etcd(format!("cluster mode is not implemented yet (etcd {:?})", config.endpoints)))
}

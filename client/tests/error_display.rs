//! A node answer that carries a code but no message (per-partition errors) is shown as the
//! code once plus what it means: issue #15 saw `STORAGE_FULL: STORAGE_FULL`.

use strand_client::ClientError;
use strand_wire::ErrorCode;

#[test]
fn a_code_without_message_is_said_once_with_its_meaning() {
    let shown = ClientError::server(ErrorCode::StorageFull, None).to_string();
    assert_eq!(shown.matches("STORAGE_FULL").count(), 1, "{shown}");
    assert!(shown.contains("min_free_bytes"), "{shown}");
    let with_message = ClientError::server(ErrorCode::InvalidConfig, Some("segment_bytes=1".into())).to_string();
    assert_eq!(with_message, "INVALID_CONFIG: segment_bytes=1");
}

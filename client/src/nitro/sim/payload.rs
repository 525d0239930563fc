//! The simulated NSM's payload: AWS's key order and encoding.

use std::collections::BTreeMap;

use ciborium::Value;

use super::{AttestationRequest, SimError};

/// The payload map in AWS's key order; absent optional fields are encoded as null,
/// as the real NSM does.
pub(super) fn encode_payload(
    module_id: String,
    req: &AttestationRequest,
    pcrs: &BTreeMap<u8, Vec<u8>>,
    timestamp_ms: u64,
    leaf_der: Vec<u8>,
    cabundle: &[Vec<u8>],
) -> Result<Vec<u8>, SimError> {
    let opt = |v: &Option<Vec<u8>>| v.clone().map_or(Value::Null, Value::Bytes);
    let map = vec![
        ("module_id", Value::Text(module_id)),
        ("digest", Value::Text("SHA384".into())),
        ("timestamp", Value::Integer(timestamp_ms.into())),
        (
            "pcrs",
            Value::Map(
                pcrs.iter()
                    .map(|(i, v)| (Value::Integer((*i).into()), Value::Bytes(v.clone())))
                    .collect(),
            ),
        ),
        ("certificate", Value::Bytes(leaf_der)),
        (
            "cabundle",
            Value::Array(cabundle.iter().cloned().map(Value::Bytes).collect()),
        ),
        ("public_key", opt(&req.public_key)),
        ("user_data", opt(&req.user_data)),
        ("nonce", opt(&req.nonce)),
    ];
    let map = Value::Map(
        map.into_iter()
            .map(|(k, v)| (Value::Text(k.into()), v))
            .collect(),
    );
    let mut out = Vec::new();
    ciborium::into_writer(&map, &mut out).map_err(|e| SimError::Generate(e.to_string()))?;
    Ok(out)
}

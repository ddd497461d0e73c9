//! On-disk encoding of a [`KeyValue`] (the key itself is the redb key).
//!
//! Format 1:
//! ```text
//! u8  format (= 1)
//! i64 create_revision  (little endian)
//! i64 mod_revision
//! i64 version
//! u8  has_lease (0 | 1)
//! i64 lease            (only if has_lease = 1)
//! ..  value            (rest of the record)
//! ```

use crate::{KeyValue, StoreError};

const FORMAT_V1: u8 = 1;

pub(crate) fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 * 3 + 9 + kv.value.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
    match kv.lease {
        Some(id) => {
            out.push(1);
            out.extend_from_slice(&id.to_le_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&kv.value);
    out
}

pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    let corrupt =
        |what: &str| StoreError::Storage(format!("corrupt record for key {key:?}: {what}"));
    let mut r = Reader { bytes };
    match r.u8().ok_or_else(|| corrupt("empty"))? {
        FORMAT_V1 => {}
        f => return Err(corrupt(&format!("unknown format {f}"))),
    }
    let create_revision = r.i64().ok_or_else(|| corrupt("truncated"))?;
    let mod_revision = r.i64().ok_or_else(|| corrupt("truncated"))?;
    let version = r.i64().ok_or_else(|| corrupt("truncated"))?;
    let lease = match r.u8().ok_or_else(|| corrupt("truncated"))? {
        0 => None,
        1 => Some(r.i64().ok_or_else(|| corrupt("truncated"))?),
        _ => return Err(corrupt("bad lease flag")),
    };
    Ok(KeyValue {
        key: key.to_string(),
        value: r.bytes.to_vec(),
        create_revision,
        mod_revision,
        version,
        lease,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(b)
    }

    fn i64(&mut self) -> Option<i64> {
        if self.bytes.len() < 8 {
            return None;
        }
        let (head, rest) = self.bytes.split_at(8);
        self.bytes = rest;
        Some(i64::from_le_bytes(head.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for lease in [None, Some(7), Some(-1)] {
            for value in [vec![], b"hello".to_vec(), vec![0; 1000]] {
                let kv = KeyValue {
                    key: "a/b".into(),
                    value,
                    create_revision: 3,
                    mod_revision: i64::MAX,
                    version: 42,
                    lease,
                };
                assert_eq!(decode("a/b", &encode(&kv)).unwrap(), kv);
            }
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode("k", &[]).is_err());
        assert!(decode("k", &[9, 0, 0]).is_err());
        assert!(decode("k", &[1, 0, 0]).is_err());
        let mut bad_flag = encode(&KeyValue {
            key: "k".into(),
            value: vec![],
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: None,
        });
        bad_flag[25] = 5;
        assert!(decode("k", &bad_flag).is_err());
    }
}

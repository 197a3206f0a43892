//! The content hash of a dataset: the sum modulo 2^256 of the SHA-256 of each sample's
//! canonical JSON. A sum does not depend on order and can be updated one sample at a
//! time in either direction, so adding or deleting samples never rereads the dataset.

use sha2::{Digest, Sha256};

use super::model::Sample;

/// A 256-bit sum, big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// The hash of an empty dataset: all zeros.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The SHA-256 of a sample's canonical JSON (keys sorted).
    pub fn of_sample(sample: &Sample) -> [u8; 32] {
        // serde_json's maps are sorted (no `preserve_order`), and so are BTreeMaps, so
        // this serialisation is canonical.
        let canonical = serde_json::json!({
            "context": sample.context,
            "expected_output": sample.expected_output,
            "id": sample.id,
            "input": sample.input,
            "metadata": sample.metadata,
        });
        Sha256::digest(canonical.to_string().as_bytes()).into()
    }

    /// Adds a sample.
    pub fn add(&mut self, sample: &Sample) {
        let digest = Self::of_sample(sample);
        let mut carry = 0u16;
        for i in (0..32).rev() {
            let sum = u16::from(self.0[i]) + u16::from(digest[i]) + carry;
            self.0[i] = sum as u8;
            carry = sum >> 8;
        }
    }

    /// Removes a sample added before.
    pub fn remove(&mut self, sample: &Sample) {
        let digest = Self::of_sample(sample);
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut difference = i16::from(self.0[i]) - i16::from(digest[i]) - borrow;
            borrow = i16::from(difference < 0);
            if difference < 0 {
                difference += 256;
            }
            self.0[i] = difference as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample(id: &str, input: &str) -> Sample {
        Sample {
            id: id.into(),
            input: json!(input),
            expected_output: "x".into(),
            context: String::new(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn order_does_not_matter_and_removal_undoes_addition() {
        let (a, b, c) = (sample("a", "1"), sample("b", "2"), sample("c", "3"));
        let mut forward = ContentHash::empty();
        for s in [&a, &b, &c] {
            forward.add(s);
        }
        let mut backward = ContentHash::empty();
        for s in [&c, &a, &b] {
            backward.add(s);
        }
        assert_eq!(forward, backward);
        forward.remove(&b);
        let mut two = ContentHash::empty();
        two.add(&a);
        two.add(&c);
        assert_eq!(forward, two);
        forward.remove(&a);
        forward.remove(&c);
        assert_eq!(forward, ContentHash::empty());
        assert_eq!(ContentHash::from_hex(&two.to_hex()), Some(two));
    }

    #[test]
    fn any_field_changes_the_hash() {
        let base = sample("a", "1");
        let mut changed = base.clone();
        changed.metadata.insert("k".into(), "v".into());
        assert_ne!(
            ContentHash::of_sample(&base),
            ContentHash::of_sample(&changed)
        );
        let mut object = base.clone();
        object.input = json!({"input": "1"});
        assert_ne!(
            ContentHash::of_sample(&base),
            ContentHash::of_sample(&object)
        );
    }
}

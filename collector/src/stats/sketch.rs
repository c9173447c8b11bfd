//! Distinct counting for rollups: an exact set of 32-bit visitor hashes while small, a HyperLogLog past that.
//!
//! Unique visitors do not add up across hours, so every rollup row keeps a sketch that can be merged. Small sets
//! (up to [`SPARSE_MAX`] visitors, what most rows hold) are exact; larger ones switch to a HyperLogLog with 4,096
//! one-byte registers (4 KB, standard error about 1.6 %). Sketches only ever hold hashes, never visitor keys.

/// Largest exact set; one more visitor turns the sketch into a HyperLogLog of the same byte size.
pub const SPARSE_MAX: usize = 1024;
/// log2 of the number of HyperLogLog registers.
const P: u32 = 12;
const REGISTERS: usize = 1 << P;
const TAG_SPARSE: u8 = 0;
const TAG_DENSE: u8 = 1;

/// The 32-bit hash a visitor key is counted by (FNV-1a, then a 64-bit finaliser so all bits mix).
pub fn visitor_hash(visitor: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in visitor.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h as u32
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sketch {
    /// Sorted, distinct hashes.
    Sparse(Vec<u32>),
    Dense(Box<[u8; REGISTERS]>),
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::Sparse(Vec::new())
    }
}

impl Sketch {
    /// Decodes [`Sketch::to_bytes`]; anything unreadable counts as empty.
    pub fn from_bytes(bytes: &[u8]) -> Sketch {
        match bytes.split_first() {
            Some((&TAG_DENSE, rest)) if rest.len() == REGISTERS => {
                let mut registers = Box::new([0u8; REGISTERS]);
                registers.copy_from_slice(rest);
                Sketch::Dense(registers)
            }
            Some((&TAG_SPARSE, rest)) => Sketch::Sparse(rest.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            _ => Sketch::default(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Sketch::Sparse(hashes) => {
                let mut out = Vec::with_capacity(1 + hashes.len() * 4);
                out.push(TAG_SPARSE);
                for h in hashes {
                    out.extend_from_slice(&h.to_le_bytes());
                }
                out
            }
            Sketch::Dense(registers) => {
                let mut out = Vec::with_capacity(1 + REGISTERS);
                out.push(TAG_DENSE);
                out.extend_from_slice(&registers[..]);
                out
            }
        }
    }

    pub fn insert(&mut self, hash: u32) {
        match self {
            Sketch::Sparse(hashes) => {
                if let Err(at) = hashes.binary_search(&hash) {
                    hashes.insert(at, hash);
                    if hashes.len() > SPARSE_MAX {
                        self.densify();
                    }
                }
            }
            Sketch::Dense(registers) => observe(registers, hash),
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        match (&mut *self, other) {
            (Sketch::Sparse(mine), Sketch::Sparse(theirs)) => {
                let mut union = Vec::with_capacity(mine.len() + theirs.len());
                let (mut i, mut j) = (0, 0);
                while i < mine.len() || j < theirs.len() {
                    let next = match (mine.get(i), theirs.get(j)) {
                        (Some(a), Some(b)) if a == b => {
                            i += 1;
                            j += 1;
                            *a
                        }
                        (Some(a), Some(b)) if a < b => {
                            i += 1;
                            *a
                        }
                        (Some(a), None) => {
                            i += 1;
                            *a
                        }
                        (_, Some(b)) => {
                            j += 1;
                            *b
                        }
                        (None, None) => unreachable!(),
                    };
                    union.push(next);
                }
                *mine = union;
                if mine.len() > SPARSE_MAX {
                    self.densify();
                }
            }
            (Sketch::Dense(registers), Sketch::Sparse(theirs)) => theirs.iter().for_each(|&h| observe(registers, h)),
            (Sketch::Sparse(_), Sketch::Dense(_)) => {
                self.densify();
                self.merge(other);
            }
            (Sketch::Dense(registers), Sketch::Dense(theirs)) => {
                for (r, t) in registers.iter_mut().zip(theirs.iter()) {
                    *r = (*r).max(*t);
                }
            }
        }
    }

    /// The number of distinct hashes: exact while sparse, a HyperLogLog estimate after.
    pub fn count(&self) -> u64 {
        match self {
            Sketch::Sparse(hashes) => hashes.len() as u64,
            Sketch::Dense(registers) => estimate(registers),
        }
    }

    fn densify(&mut self) {
        if let Sketch::Sparse(hashes) = self {
            let mut registers = Box::new([0u8; REGISTERS]);
            hashes.iter().for_each(|&h| observe(&mut registers, h));
            *self = Sketch::Dense(registers);
        }
    }
}

fn observe(registers: &mut [u8; REGISTERS], hash: u32) {
    let index = (hash >> (32 - P)) as usize;
    let rest = hash << P;
    // Position of the first 1 bit in the remaining 20 bits (21 when they are all zero).
    let rank = (rest.leading_zeros().min(32 - P) + 1) as u8;
    registers[index] = registers[index].max(rank);
}

fn estimate(registers: &[u8; REGISTERS]) -> u64 {
    let m = REGISTERS as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let (sum, zeros) = registers.iter().fold((0.0f64, 0u32), |(sum, zeros), &r| (sum + (-f64::from(r)).exp2(), zeros + u32::from(r == 0)));
    let raw = alpha * m * m / sum;
    let value = if raw <= 2.5 * m && zeros > 0 {
        // Linear counting is the better estimate while many registers are still empty.
        m * (m / f64::from(zeros)).ln()
    } else if raw > (1u64 << 32) as f64 / 30.0 {
        // Large-range correction for 32-bit hashes.
        -((1u64 << 32) as f64) * (1.0 - raw / (1u64 << 32) as f64).ln()
    } else {
        raw
    };
    value.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch_of(range: std::ops::Range<u32>) -> Sketch {
        let mut s = Sketch::default();
        range.for_each(|i| s.insert(visitor_hash(&format!("a:visitor-{i}"))));
        s
    }

    #[test]
    fn small_sets_are_exact_and_merge_without_double_counting() {
        let a = sketch_of(0..300);
        let b = sketch_of(200..500);
        assert_eq!(a.count(), 300);
        let mut u = a.clone();
        u.merge(&b);
        assert_eq!(u.count(), 500);
        u.merge(&b);
        assert_eq!(u.count(), 500, "merging is idempotent");
        assert_eq!(Sketch::from_bytes(&u.to_bytes()), u);
    }

    #[test]
    fn large_sets_estimate_within_a_few_percent() {
        for n in [2_000u32, 20_000, 300_000] {
            let s = sketch_of(0..n);
            assert!(matches!(s, Sketch::Dense(_)));
            let error = (s.count() as f64 - f64::from(n)).abs() / f64::from(n);
            assert!(error < 0.05, "n={n} estimate={} error={error}", s.count());
            assert_eq!(Sketch::from_bytes(&s.to_bytes()), s);
        }
    }

    #[test]
    fn merge_is_order_independent_across_the_switch() {
        let (a, b, c) = (sketch_of(0..900), sketch_of(600..1500), sketch_of(1400..5000));
        let mut x = a.clone();
        x.merge(&b);
        x.merge(&c);
        let mut y = c.clone();
        y.merge(&b);
        y.merge(&a);
        assert_eq!(x, y);
        let whole = sketch_of(0..5000);
        assert_eq!(x, whole, "a merged HyperLogLog equals the one built from the union");
    }

    #[test]
    fn garbage_reads_as_empty() {
        assert_eq!(Sketch::from_bytes(&[]).count(), 0);
        assert_eq!(Sketch::from_bytes(&[7, 1, 2]).count(), 0);
        assert_eq!(Sketch::from_bytes(&[TAG_DENSE, 1]).count(), 0);
    }
}

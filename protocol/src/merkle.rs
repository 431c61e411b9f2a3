//! The Merkle tree of RFC 9162 (Certificate Transparency 2.0) §2.1, sans I/O.
//!
//! - Hashing is domain separated: a leaf is `SHA-256(0x00 || data)`, an interior node
//!   `SHA-256(0x01 || left || right)`, the empty tree `SHA-256("")`. A leaf can never be
//!   passed off as a node or the other way round.
//! - [`Frontier`] is the incremental ("compact range") form of a tree: the roots of the
//!   perfect subtrees its leaves decompose into, at most 64 hashes. Appending a leaf costs
//!   one leaf hash and, amortised, one node hash, so a log can keep its tree up to date at
//!   every append without storing anything but the frontier.
//! - [`tree_root`], [`inclusion_proof`] and [`consistency_proof`] compute over the leaf hashes
//!   of a whole tree (an auditor recomputes them from the log), and
//!   [`verify_inclusion`] and [`verify_consistency`] check proofs against roots alone
//!   (RFC 9162 §2.1.3.2 and §2.1.4.2).
//!
//! Every function returns a typed [`MerkleError`] on bad input (an index beyond the tree, a
//! proof of the wrong length, a truncated frontier) and never panics.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 digest: a leaf hash, a node hash or a root.
pub type Hash = [u8; 32];

/// Why a tree operation or a proof check failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MerkleError {
    /// A leaf index at or beyond the size of the tree.
    #[error("leaf {index} is not in a tree of {size} leaves")]
    IndexBeyondTree {
        /// The index asked for.
        index: u64,
        /// The tree's size.
        size: u64,
    },
    /// A consistency proof asked for between an older size larger than the newer.
    #[error("a tree of {old} leaves cannot be a prefix of a tree of {new} leaves")]
    OldBeyondNew {
        /// The older size.
        old: u64,
        /// The newer size.
        new: u64,
    },
    /// A size larger than the leaves at hand.
    #[error("a tree of {size} leaves was asked for, but only {available} leaves are known")]
    SizeBeyondLeaves {
        /// The size asked for.
        size: u64,
        /// The leaves known.
        available: u64,
    },
    /// A proof with too many or too few hashes for the sizes it claims to link.
    #[error("the proof has {found} hashes; a proof for these sizes has {expected}")]
    WrongProofLength {
        /// How many hashes the proof should have.
        expected: usize,
        /// How many it has.
        found: usize,
    },
    /// The proof does not lead to the root it was checked against.
    #[error("the proof does not lead to the expected root (the tree differs)")]
    RootMismatch,
    /// Two checkpoints of the same size with different roots.
    #[error("two trees of {size} leaves with different roots: they are not the same log")]
    SameSizeDifferentRoots {
        /// The common size.
        size: u64,
    },
    /// A serialised frontier that is not one.
    #[error("malformed tree frontier: {0}")]
    MalformedFrontier(&'static str),
}

/// The hash of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The leaf hash of `data`: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    let p = 1u64 << (63 - (n - 1).leading_zeros());
    if p == n { p / 2 } else { p }
}

/// The incremental form of a tree: its size and the roots of its perfect subtrees, largest
/// (leftmost) first. A tree of `n` leaves has one subtree per set bit of `n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends a leaf given its data.
    pub fn append(&mut self, data: &[u8]) {
        self.append_leaf_hash(leaf_hash(data));
    }

    /// Appends a leaf given its leaf hash.
    pub fn append_leaf_hash(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        // Each trailing set bit of the old size is a subtree of the new leaf's height:
        // merge them, smallest first.
        while size & 1 == 1 {
            match self.nodes.pop() {
                Some(left) => hash = node_hash(&left, &hash),
                None => break,
            }
            size >>= 1;
        }
        self.nodes.push(hash);
        self.size += 1;
    }

    /// The root of the tree (RFC 9162 MTH).
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |right, left| node_hash(left, &right))
    }

    /// Serialised: size (u64 big endian) followed by the subtree roots, largest first.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.nodes.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for n in &self.nodes {
            out.extend_from_slice(n);
        }
        out
    }

    /// Parses [`Frontier::to_bytes`]; the number of hashes must match the size.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MerkleError> {
        let size_bytes: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or(
            MerkleError::MalformedFrontier("shorter than its size field"),
        )?;
        let size = u64::from_be_bytes(size_bytes);
        let rest = bytes.get(8..).unwrap_or_default();
        if rest.len() % 32 != 0 {
            return Err(MerkleError::MalformedFrontier(
                "the hashes are not a whole number of 32-byte digests",
            ));
        }
        if rest.len() / 32 != size.count_ones() as usize {
            return Err(MerkleError::MalformedFrontier(
                "the number of hashes does not match the tree size",
            ));
        }
        let nodes = rest
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Self { size, nodes })
    }

    /// The frontier of the first `leaves.len()` leaves given their leaf hashes.
    pub fn from_leaf_hashes(leaves: &[Hash]) -> Self {
        let mut f = Self::new();
        for l in leaves {
            f.append_leaf_hash(*l);
        }
        f
    }
}

/// The root of the tree over `leaves` (leaf hashes), RFC 9162 MTH.
pub fn tree_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            let (l, r) = leaves.split_at(k);
            node_hash(&tree_root(l), &tree_root(r))
        }
    }
}

fn prefix(leaves: &[Hash], size: u64) -> Result<&[Hash], MerkleError> {
    usize::try_from(size)
        .ok()
        .and_then(|s| leaves.get(..s))
        .ok_or(MerkleError::SizeBeyondLeaves {
            size,
            available: leaves.len() as u64,
        })
}

/// The root of the first `size` of `leaves`.
pub fn root_at(leaves: &[Hash], size: u64) -> Result<Hash, MerkleError> {
    Ok(tree_root(prefix(leaves, size)?))
}

/// The inclusion proof (audit path) of leaf `index` in the tree of the first `size` of
/// `leaves`, bottom up (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
    let tree = prefix(leaves, size)?;
    if index >= size {
        return Err(MerkleError::IndexBeyondTree { index, size });
    }
    let mut proof = Vec::new();
    path(index as usize, tree, &mut proof);
    Ok(proof)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split_point(d.len() as u64) as usize;
    let (l, r) = d.split_at(k);
    if m < k {
        path(m, l, out);
        out.push(tree_root(r));
    } else {
        path(m - k, r, out);
        out.push(tree_root(l));
    }
}

/// The consistency proof between the tree of the first `old` and the first `new` of
/// `leaves` (RFC 9162 §2.1.4.1). Empty when `old` is 0 or equals `new`.
pub fn consistency_proof(leaves: &[Hash], old: u64, new: u64) -> Result<Vec<Hash>, MerkleError> {
    let tree = prefix(leaves, new)?;
    if old > new {
        return Err(MerkleError::OldBeyondNew { old, new });
    }
    let mut proof = Vec::new();
    if old > 0 && old < new {
        subproof(old as usize, tree, true, &mut proof);
    }
    Ok(proof)
}

fn subproof(m: usize, d: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !complete {
            out.push(tree_root(d));
        }
        return;
    }
    let k = split_point(n as u64) as usize;
    let (l, r) = d.split_at(k);
    if m <= k {
        subproof(m, l, complete, out);
        out.push(tree_root(r));
    } else {
        subproof(m - k, r, false, out);
        out.push(tree_root(l));
    }
}

/// The number of hashes of an inclusion proof of `index` in a tree of `size` leaves.
pub fn inclusion_proof_len(index: u64, size: u64) -> Result<usize, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexBeyondTree { index, size });
    }
    let (inner, border) = decompose(index, size);
    Ok((inner + border) as usize)
}

/// RFC 9162 style split of an audit path: the levels below the point where the paths of
/// `index` and of the last leaf part (inner), and the levels above it (border).
fn decompose(index: u64, size: u64) -> (u32, u32) {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

/// Checks that `leaf` (a leaf hash) is leaf `index` of the tree of `size` leaves whose root
/// is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    let expected = inclusion_proof_len(index, size)?;
    if proof.len() != expected {
        return Err(MerkleError::WrongProofLength {
            expected,
            found: proof.len(),
        });
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(MerkleError::WrongProofLength {
                expected,
                found: proof.len(),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(MerkleError::WrongProofLength {
            expected,
            found: proof.len(),
        });
    }
    if r == *root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// The number of hashes of a consistency proof from `old` to `new` leaves.
pub fn consistency_proof_len(old: u64, new: u64) -> Result<usize, MerkleError> {
    if old > new {
        return Err(MerkleError::OldBeyondNew { old, new });
    }
    if old == 0 || old == new {
        return Ok(0);
    }
    // The levels below where the old tree's last leaf and the new tree's last leaf part,
    // then the border above; a perfect old tree supplies its own root.
    let (inner, border) = decompose(old - 1, new);
    let shift = (old - 1).trailing_ones().min(inner);
    let first = u32::from(!old.is_power_of_two());
    Ok((inner - shift + border + first) as usize)
}

/// Checks that the tree of `old` leaves with root `old_root` is a prefix of the tree of
/// `new` leaves with root `new_root` (RFC 9162 §2.1.4.2). The empty tree (whose root must
/// be [`empty_root`]) is a prefix of every tree; two trees of the same size are consistent
/// only when their roots are equal.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    let expected = consistency_proof_len(old, new)?;
    if proof.len() != expected {
        return Err(MerkleError::WrongProofLength {
            expected,
            found: proof.len(),
        });
    }
    if old == 0 {
        // A head of size 0 is the empty tree, whose root is fixed.
        return if *old_root == empty_root() {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    if old == new {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(MerkleError::SameSizeDifferentRoots { size: old })
        };
    }
    let wrong_len = || MerkleError::WrongProofLength {
        expected,
        found: proof.len(),
    };
    // A perfect old tree is its own first node.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let mut fn_ = old - 1;
    let mut sn = new - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (first, rest) = path.split_first().ok_or_else(wrong_len)?;
    let mut fr = *first;
    let mut sr = *first;
    for c in rest {
        if sn == 0 {
            return Err(wrong_len());
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(wrong_len());
    }
    if fr == *old_root && sr == *new_root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The reference tree's leaf data (certificate-transparency's merkle_tree_test.cc).
    fn ct_inputs() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| hex::decode(s).unwrap())
        .collect()
    }

    fn ct_leaves() -> Vec<Hash> {
        ct_inputs().iter().map(|d| leaf_hash(d)).collect()
    }

    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn empty_tree_is_the_hash_of_nothing() {
        let empty = h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(empty_root(), empty);
        assert_eq!(Frontier::new().root(), empty);
        assert_eq!(tree_root(&[]), empty);
    }

    #[test]
    fn ct_reference_roots_for_1_to_8_leaves() {
        let leaves = ct_leaves();
        let mut f = Frontier::new();
        for (i, data) in ct_inputs().iter().enumerate() {
            f.append(data);
            assert_eq!(f.size(), i as u64 + 1);
            assert_eq!(
                f.root(),
                h(CT_ROOTS[i]),
                "incremental root of {} leaves",
                i + 1
            );
            assert_eq!(tree_root(&leaves[..=i]), h(CT_ROOTS[i]));
            let back = Frontier::from_bytes(&f.to_bytes()).unwrap();
            assert_eq!(back, f);
        }
    }

    #[test]
    fn ct_reference_inclusion_paths() {
        let leaves = ct_leaves();
        // (0-based leaf, tree size, path) from the reference tests (which count from 1).
        let cases: [(u64, u64, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let proof = inclusion_proof(&leaves, index, size).unwrap();
            assert_eq!(proof, want, "path of leaf {index} in {size}");
            let root = h(CT_ROOTS[size as usize - 1]);
            verify_inclusion(&leaves[index as usize], index, size, &proof, &root).unwrap();
            // Wrong index, size, leaf, root, or a changed path: refused.
            assert!(
                verify_inclusion(&leaves[index as usize], index ^ 1, size, &proof, &root).is_err()
            );
            assert!(
                verify_inclusion(&leaves[index as usize], index, size * 2, &proof, &root).is_err()
            );
            assert!(
                verify_inclusion(&leaf_hash(b"WrongLeaf"), index, size, &proof, &root).is_err()
            );
            assert!(
                verify_inclusion(&leaves[index as usize], index, size, &proof, &empty_root())
                    .is_err()
            );
            for j in 0..proof.len() {
                let mut bad = proof.clone();
                bad[j] = empty_root();
                assert_eq!(
                    verify_inclusion(&leaves[index as usize], index, size, &bad, &root),
                    Err(MerkleError::RootMismatch)
                );
            }
            let mut longer = proof.clone();
            longer.push(root);
            assert!(matches!(
                verify_inclusion(&leaves[index as usize], index, size, &longer, &root),
                Err(MerkleError::WrongProofLength { .. })
            ));
        }
        // A one-leaf tree: the path is empty.
        assert!(inclusion_proof(&leaves, 0, 1).unwrap().is_empty());
    }

    #[test]
    fn ct_reference_consistency_proofs() {
        let leaves = ct_leaves();
        let cases: [(u64, u64, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let proof = consistency_proof(&leaves, old, new).unwrap();
            assert_eq!(proof, want, "consistency {old} -> {new}");
            let r1 = h(CT_ROOTS[old as usize - 1]);
            let r2 = h(CT_ROOTS[new as usize - 1]);
            verify_consistency(old, new, &r1, &r2, &proof).unwrap();
            if proof.is_empty() {
                continue;
            }
            assert!(verify_consistency(old, new, &r2, &r1, &proof).is_err());
            assert!(verify_consistency(old - 1, new, &r1, &r2, &proof).is_err());
            assert!(verify_consistency(old + 1, new, &r1, &r2, &proof).is_err());
            assert!(verify_consistency(old, new * 2, &r1, &r2, &proof).is_err());
            assert!(verify_consistency(old, new, &r1, &r2, &[]).is_err());
            for j in 0..proof.len() {
                let mut bad = proof.clone();
                bad[j] = empty_root();
                assert!(verify_consistency(old, new, &r1, &r2, &bad).is_err());
            }
        }
    }

    #[test]
    fn trivial_and_impossible_consistency() {
        let e = empty_root();
        let x = leaf_hash(b"x");
        verify_consistency(0, 0, &e, &e, &[]).unwrap();
        verify_consistency(0, 5, &e, &x, &[]).unwrap();
        assert_eq!(
            verify_consistency(0, 5, &x, &x, &[]),
            Err(MerkleError::RootMismatch)
        );
        assert_eq!(
            verify_consistency(3, 3, &e, &x, &[]),
            Err(MerkleError::SameSizeDifferentRoots { size: 3 })
        );
        assert_eq!(
            verify_consistency(4, 3, &e, &x, &[]),
            Err(MerkleError::OldBeyondNew { old: 4, new: 3 })
        );
        assert!(matches!(
            verify_consistency(1, 1, &x, &x, &[x]),
            Err(MerkleError::WrongProofLength {
                expected: 0,
                found: 1
            })
        ));
        assert!(matches!(
            verify_consistency(1, 2, &x, &x, &[]),
            Err(MerkleError::WrongProofLength { .. })
        ));
    }

    #[test]
    fn bad_input_gives_typed_errors() {
        let leaves = ct_leaves();
        assert_eq!(
            inclusion_proof(&leaves, 8, 8),
            Err(MerkleError::IndexBeyondTree { index: 8, size: 8 })
        );
        assert_eq!(
            inclusion_proof(&leaves, 0, 9),
            Err(MerkleError::SizeBeyondLeaves {
                size: 9,
                available: 8
            })
        );
        assert_eq!(
            consistency_proof(&leaves, 3, 9),
            Err(MerkleError::SizeBeyondLeaves {
                size: 9,
                available: 8
            })
        );
        assert_eq!(
            consistency_proof(&leaves, 5, 4),
            Err(MerkleError::OldBeyondNew { old: 5, new: 4 })
        );
        assert_eq!(
            verify_inclusion(&leaves[0], 0, 0, &[], &empty_root()),
            Err(MerkleError::IndexBeyondTree { index: 0, size: 0 })
        );
        assert_eq!(
            verify_inclusion(&leaves[0], u64::MAX, u64::MAX, &[], &empty_root()),
            Err(MerkleError::IndexBeyondTree {
                index: u64::MAX,
                size: u64::MAX
            })
        );
        // Huge sizes are fine to ask about: only the length check answers.
        assert!(matches!(
            verify_inclusion(&leaves[0], 0, u64::MAX, &[], &empty_root()),
            Err(MerkleError::WrongProofLength {
                expected: 64,
                found: 0
            })
        ));
        assert!(matches!(
            verify_consistency(1, u64::MAX, &leaves[0], &leaves[1], &[]),
            Err(MerkleError::WrongProofLength { .. })
        ));
        for bytes in [&[][..], &[0u8; 7][..], &[0, 0, 0, 0, 0, 0, 0, 1][..]] {
            assert!(Frontier::from_bytes(bytes).is_err());
        }
        let mut two = 2u64.to_be_bytes().to_vec();
        two.extend_from_slice(&[0u8; 33]);
        assert!(Frontier::from_bytes(&two).is_err());
    }

    fn leaves_of(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn exhaustive_small_trees() {
        let leaves = leaves_of(40);
        for size in 1..=40u64 {
            let root = root_at(&leaves, size).unwrap();
            assert_eq!(
                Frontier::from_leaf_hashes(&leaves[..size as usize]).root(),
                root
            );
            for index in 0..size {
                let p = inclusion_proof(&leaves, index, size).unwrap();
                assert_eq!(p.len(), inclusion_proof_len(index, size).unwrap());
                verify_inclusion(&leaves[index as usize], index, size, &p, &root).unwrap();
            }
            for old in 0..=size {
                let p = consistency_proof(&leaves, old, size).unwrap();
                assert_eq!(
                    p.len(),
                    consistency_proof_len(old, size).unwrap(),
                    "{old}->{size}"
                );
                let old_root = root_at(&leaves, old).unwrap();
                verify_consistency(old, size, &old_root, &root, &p).unwrap();
            }
        }
    }

    proptest! {
        #[test]
        fn inclusion_holds_for_random_sizes(size in 1u64..600, pick in any::<u64>(), other in any::<u8>()) {
            let leaves = leaves_of(size);
            let index = pick % size;
            let root = Frontier::from_leaf_hashes(&leaves).root();
            let p = inclusion_proof(&leaves, index, size).unwrap();
            prop_assert!(verify_inclusion(&leaves[index as usize], index, size, &p, &root).is_ok());
            // Another leaf at that index is refused.
            let wrong = leaf_hash(&[other, 0xff]);
            prop_assert!(verify_inclusion(&wrong, index, size, &p, &root).is_err());
        }

        #[test]
        fn consistency_holds_for_random_sizes(new in 1u64..600, pick in any::<u64>(), flip in any::<u64>()) {
            let leaves = leaves_of(new);
            let old = pick % (new + 1);
            let old_root = root_at(&leaves, old).unwrap();
            let new_root = root_at(&leaves, new).unwrap();
            let p = consistency_proof(&leaves, old, new).unwrap();
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &p).is_ok());
            // A log that changed one leaf before `old` is not an extension.
            if old > 0 {
                let mut changed = leaves.clone();
                let at = (flip % old) as usize;
                changed[at] = leaf_hash(b"rewritten");
                let changed_root = root_at(&changed, new).unwrap();
                let p2 = consistency_proof(&changed, old, new).unwrap();
                prop_assert!(verify_consistency(old, new, &old_root, &changed_root, &p2).is_err());
            }
        }
    }
}

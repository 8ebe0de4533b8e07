//! ggml tensor type sizes and llama.cpp file-type names, the two lookup tables a GGUF
//! header needs to be checked and described.

/// Storage layout of one ggml tensor type: values come in blocks of `block_size`
/// elements that take `type_size` bytes together.
///
/// Mirrors the `type_traits` table in ggml's `ggml.c` (sizes are the `sizeof` of the
/// `block_*` structs in `ggml-common.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType {
    /// ggml's lowercase name, e.g. `q4_K`, for messages.
    pub name: &'static str,
    /// Elements per block; a row length must be a multiple of it.
    pub block_size: u64,
    /// Bytes per block.
    pub type_size: u64,
}

const QK_K: u64 = 256;

const fn t(name: &'static str, block_size: u64, type_size: u64) -> Option<GgmlType> {
    Some(GgmlType {
        name,
        block_size,
        type_size,
    })
}

/// Looks up a ggml type by its numeric id as stored in a GGUF tensor info.
///
/// Returns `None` for ids that ggml removed (4, 5, 31..=33, 36..=38) or that are newer
/// than this table; callers skip the size check for those instead of failing.
///
/// ```
/// use netmoe_common::gguf::ggml_type;
/// // Q4_K: 256 weights in 144 bytes = 4.5 bits per weight.
/// let q4k = ggml_type(12).unwrap();
/// assert_eq!((q4k.block_size, q4k.type_size), (256, 144));
/// assert!(ggml_type(31).is_none());
/// ```
pub fn ggml_type(id: u32) -> Option<GgmlType> {
    match id {
        0 => t("f32", 1, 4),
        1 => t("f16", 1, 2),
        2 => t("q4_0", 32, 18),     // f16 d + 16 nibble bytes
        3 => t("q4_1", 32, 20),     // f16 d, m + 16
        6 => t("q5_0", 32, 22),     // f16 d + 4 qh + 16
        7 => t("q5_1", 32, 24),     // f16 d, m + 4 qh + 16
        8 => t("q8_0", 32, 34),     // f16 d + 32
        9 => t("q8_1", 32, 36),     // f16 d, s + 32
        10 => t("q2_K", QK_K, 84),  // 16 scales + 64 qs + f16 d, dmin
        11 => t("q3_K", QK_K, 110), // 32 hmask + 64 qs + 12 scales + f16 d
        12 => t("q4_K", QK_K, 144), // f16 d, dmin + 12 scales + 128 qs
        13 => t("q5_K", QK_K, 176), // f16 d, dmin + 12 scales + 32 qh + 128 qs
        14 => t("q6_K", QK_K, 210), // 128 ql + 64 qh + 16 scales + f16 d
        15 => t("q8_K", QK_K, 292), // f32 d + 256 qs + 16 i16 bsums
        16 => t("iq2_xxs", QK_K, 66),
        17 => t("iq2_xs", QK_K, 74),
        18 => t("iq3_xxs", QK_K, 98),
        19 => t("iq1_s", QK_K, 50),
        20 => t("iq4_nl", 32, 18),
        21 => t("iq3_s", QK_K, 110),
        22 => t("iq2_s", QK_K, 82),
        23 => t("iq4_xs", QK_K, 136),
        24 => t("i8", 1, 1),
        25 => t("i16", 1, 2),
        26 => t("i32", 1, 4),
        27 => t("i64", 1, 8),
        28 => t("f64", 1, 8),
        29 => t("iq1_m", QK_K, 56),
        30 => t("bf16", 1, 2),
        34 => t("tq1_0", QK_K, 54),
        35 => t("tq2_0", QK_K, 66),
        39 => t("mxfp4", 32, 17), // u8 e8m0 scale + 16
        40 => t("nvfp4", 64, 36), // 4 u8 scales + 32
        41 => t("q1_0", 128, 18), // f16 d + 16
        _ => None,
    }
}

/// Bit llama.cpp sets in `general.file_type` when the type was guessed, not recorded.
const FTYPE_GUESSED: u32 = 1024;

/// Names a `general.file_type` value (llama.cpp's `llama_ftype`) the way llama.cpp
/// prints it, e.g. `15` is `"Q4_K - Medium"`.
///
/// ```
/// use netmoe_common::gguf::ftype_name;
/// assert_eq!(ftype_name(15).as_deref(), Some("Q4_K - Medium"));
/// assert_eq!(ftype_name(7 | 1024).as_deref(), Some("Q8_0 (guessed)"));
/// assert_eq!(ftype_name(999), None);
/// ```
pub fn ftype_name(ftype: u32) -> Option<String> {
    let name = match ftype & !FTYPE_GUESSED {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_1, some F16",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K - Medium",
        11 => "Q3_K - Small",
        12 => "Q3_K - Medium",
        13 => "Q3_K - Large",
        14 => "Q4_K - Small",
        15 => "Q4_K - Medium",
        16 => "Q5_K - Small",
        17 => "Q5_K - Medium",
        18 => "Q6_K",
        19 => "IQ2_XXS - 2.0625 bpw",
        20 => "IQ2_XS - 2.3125 bpw",
        21 => "Q2_K - Small",
        22 => "IQ3_XS - 3.3 bpw",
        23 => "IQ3_XXS - 3.0625 bpw",
        24 => "IQ1_S - 1.5625 bpw",
        25 => "IQ4_NL - 4.5 bpw",
        26 => "IQ3_S - 3.4375 bpw",
        27 => "IQ3_S mix - 3.66 bpw",
        28 => "IQ2_S - 2.5 bpw",
        29 => "IQ2_M - 2.7 bpw",
        30 => "IQ4_XS - 4.25 bpw",
        31 => "IQ1_M - 1.75 bpw",
        32 => "BF16",
        36 => "TQ1_0 - 1.69 bpw ternary",
        37 => "TQ2_0 - 2.06 bpw ternary",
        38 => "MXFP4 MoE",
        _ => return None,
    };
    Some(if ftype & FTYPE_GUESSED != 0 {
        format!("{name} (guessed)")
    } else {
        name.to_owned()
    })
}

/// Bytes taken by a tensor of type `ty` with dimensions `dims` (innermost first), or
/// `None` when the row length is not a whole number of blocks or the size overflows.
///
/// ```
/// use netmoe_common::gguf::{ggml_type, tensor_bytes};
/// // A 640 x 2048 Q8_0 matrix: 640 / 32 = 20 blocks of 34 bytes per row = 680 bytes,
/// // times 2048 rows = 1_392_640 bytes.
/// assert_eq!(tensor_bytes(ggml_type(8).unwrap(), &[640, 2048]), Some(1_392_640));
/// assert_eq!(tensor_bytes(ggml_type(8).unwrap(), &[33]), None);
/// ```
pub fn tensor_bytes(ty: GgmlType, dims: &[u64]) -> Option<u64> {
    let row = dims.first().copied().unwrap_or(1);
    if row % ty.block_size != 0 {
        return None;
    }
    let row_bytes = (row / ty.block_size).checked_mul(ty.type_size)?;
    dims.iter()
        .skip(1)
        .try_fold(row_bytes, |acc, &d| acc.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_per_weight_match_the_quant_names() {
        // bpw = 8 * type_size / block_size; the IQ names carry it, so check them.
        let bpw = |id| {
            let ty = ggml_type(id).unwrap();
            8.0 * ty.type_size as f64 / ty.block_size as f64
        };
        assert_eq!(bpw(16), 2.0625); // iq2_xxs
        assert_eq!(bpw(17), 2.3125); // iq2_xs
        assert_eq!(bpw(18), 3.0625); // iq3_xxs
        assert_eq!(bpw(19), 1.5625); // iq1_s
        assert_eq!(bpw(20), 4.5); // iq4_nl
        assert_eq!(bpw(21), 3.4375); // iq3_s
        assert_eq!(bpw(22), 2.5625); // iq2_s
        assert_eq!(bpw(23), 4.25); // iq4_xs
        assert_eq!(bpw(29), 1.75); // iq1_m
        assert_eq!(bpw(14), 6.5625); // q6_K
        assert_eq!(bpw(12), 4.5); // q4_K
        assert_eq!(bpw(10), 2.625); // q2_K
    }

    #[test]
    fn zero_dim_tensor_is_one_element() {
        assert_eq!(tensor_bytes(ggml_type(0).unwrap(), &[]), Some(4));
    }
}

//! SMS text encodings (GSM 03.38 / 3GPP TS 23.038) and how a text is cut into parts.
//!
//! Everything here is a pure function of its input: no I/O, and no panics on any input.
//!
//! # Encodings and limits
//!
//! | encoding | SMPP `data_coding` | unit | one SMS | per part of a concatenated SMS |
//! |---|---|---|---|---|
//! | [`Encoding::Gsm7`] | `0x00` | septet | 160 | 153 |
//! | [`Encoding::Ucs2`] | `0x08` | UTF-16 code unit | 70 | 67 |
//! | [`Encoding::Latin1`] | `0x03` | byte | 140 | 134 |
//! | [`Encoding::Binary`] | `0x04` | byte | 140 | 134 |
//!
//! A character of the GSM extension table (`€`, `[`, `{`, ...) takes two septets, an
//! escape (`0x1B`) and its code, and the pair is never split across parts. Likewise a
//! UCS-2 text is really UTF-16: a character outside the Basic Multilingual Plane (an
//! emoji) takes a surrogate pair, which is never split either.
//!
//! # Packed and unpacked GSM 7-bit
//!
//! [`encode_gsm7`] gives *unpacked* septets, one per octet, which is what SMPP
//! `data_coding` 0 commonly carries. With a concatenation UDH in front (6 octets for an
//! 8-bit reference) the body of an unpacked part therefore needs no fill bits, and a part
//! holds 153 septets: the standard figure, which is what [`segment_count`] reports.
//! [`pack_septets`] and [`unpack_septets`] convert to and from the packed form of the air
//! interface (7 bits per septet); [`pack_septets_with_fill`], [`unpack_septets_with_fill`]
//! and [`fill_bits_after_udh`] handle a packed body that follows a UDH.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The SMS data coding chosen for a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The GSM 03.38 7-bit default alphabet and its extension table.
    Gsm7,
    /// UCS-2, sent as UTF-16BE so that characters beyond the BMP survive.
    Ucs2,
    /// ISO-8859-1, one byte per character.
    Latin1,
    /// Opaque 8-bit data.
    Binary,
}

/// Every encoding.
pub const ALL_ENCODINGS: [Encoding; 4] = [
    Encoding::Gsm7,
    Encoding::Ucs2,
    Encoding::Latin1,
    Encoding::Binary,
];

/// The most parts a concatenated SMS can have (its part count is a single octet).
pub const MAX_SEGMENTS: u32 = 255;

/// An encoding name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown encoding {0:?}")]
pub struct UnknownEncoding(pub String);

impl Encoding {
    /// The encoding's name as written in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gsm7 => "gsm7",
            Self::Ucs2 => "ucs2",
            Self::Latin1 => "latin1",
            Self::Binary => "binary",
        }
    }

    /// The SMPP `data_coding` value for this encoding.
    pub fn data_coding(self) -> u8 {
        match self {
            Self::Gsm7 => 0x00,
            Self::Latin1 => 0x03,
            Self::Binary => 0x04,
            Self::Ucs2 => 0x08,
        }
    }

    /// The encoding for an SMPP `data_coding` value, if it is one we read: `0x00` GSM
    /// 7-bit, `0x01` IA5 (ASCII, read as its superset Latin-1), `0x03` Latin-1, `0x02` and
    /// `0x04` binary, `0x08` UCS-2.
    pub fn from_data_coding(data_coding: u8) -> Option<Encoding> {
        match data_coding {
            0x00 => Some(Self::Gsm7),
            0x01 | 0x03 => Some(Self::Latin1),
            0x02 | 0x04 => Some(Self::Binary),
            0x08 => Some(Self::Ucs2),
            _ => None,
        }
    }

    /// The most units (see [`Segmentation::units`]) a text may take to fit in one SMS.
    pub fn single_part_units(self) -> u32 {
        match self {
            Self::Gsm7 => 160,
            Self::Ucs2 => 70,
            Self::Latin1 | Self::Binary => 140,
        }
    }

    /// The most units one part of a concatenated SMS holds (room is left for the UDH).
    pub fn multi_part_units(self) -> u32 {
        match self {
            Self::Gsm7 => 153,
            Self::Ucs2 => 67,
            Self::Latin1 | Self::Binary => 134,
        }
    }

    /// How many encoded bytes one unit takes in the output of [`encode`].
    fn bytes_per_unit(self) -> usize {
        match self {
            Self::Ucs2 => 2,
            Self::Gsm7 | Self::Latin1 | Self::Binary => 1,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Encoding {
    type Err = UnknownEncoding;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_ENCODINGS
            .into_iter()
            .find(|encoding| encoding.as_str() == s)
            .ok_or_else(|| UnknownEncoding(s.to_owned()))
    }
}

/// A text that cannot be written in the encoding asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A character has no code in the encoding. `index` counts characters (Unicode
    /// scalar values) from 0, not bytes.
    #[error("character {ch:?} at {index} cannot be written in {encoding}")]
    Unrepresentable {
        /// The character.
        ch: char,
        /// Its position in the text, in characters.
        index: usize,
        /// The encoding's name (as [`Encoding::as_str`]).
        encoding: &'static str,
    },
}

// ---------------------------------------------------------------------------------------
// The GSM 03.38 tables
// ---------------------------------------------------------------------------------------

/// The escape to the extension table.
const ESC: u8 = 0x1B;

/// The GSM 03.38 default alphabet, indexed by septet. The escape (`0x1B`) has no
/// character of its own; its slot holds the space it is displayed as when it escapes
/// nothing (TS 23.038, note to the extension table), and no character encodes to it.
const GSM7_BASIC: [char; 128] = [
    // 0x00
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
    // 0x10
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É',
    // 0x20
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
    // 0x30
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
    // 0x40
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
    // 0x50
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
    // 0x60
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    // 0x70
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

/// The GSM 03.38 extension table: the code following an escape, and its character.
const GSM7_EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed (page break)
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Marks "no septet" in [`LATIN1_TO_GSM7`].
const NO_SEPTET: u8 = 0xFF;

/// The reverse of [`GSM7_BASIC`] for characters up to U+00FF, built at compile time.
const LATIN1_TO_GSM7: [u8; 256] = {
    let mut table = [NO_SEPTET; 256];
    let mut code = 0;
    while code < GSM7_BASIC.len() {
        let ch = GSM7_BASIC[code] as u32;
        if code != ESC as usize && ch < 256 {
            table[ch as usize] = code as u8;
        }
        code += 1;
    }
    table
};

/// Where a character sits in the GSM 03.38 tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gsm7Code {
    /// A septet of the default alphabet.
    Basic(u8),
    /// A code of the extension table, written after an escape.
    Extended(u8),
}

/// The GSM code of `ch`, if it has one.
fn gsm7_code(ch: char) -> Option<Gsm7Code> {
    let basic = match u8::try_from(u32::from(ch)) {
        Ok(latin1) => Some(LATIN1_TO_GSM7[usize::from(latin1)]).filter(|&c| c != NO_SEPTET),
        // Only the Greek capitals of the table lie beyond U+00FF.
        Err(_) if ('Γ'..='Ω').contains(&ch) => {
            (0x10..0x1B).find(|&code| GSM7_BASIC[usize::from(code)] == ch)
        }
        Err(_) => None,
    };
    basic.map(Gsm7Code::Basic).or_else(|| {
        GSM7_EXTENSION
            .iter()
            .find(|&&(_, c)| c == ch)
            .map(|&(code, _)| Gsm7Code::Extended(code))
    })
}

/// The character of a default-alphabet septet (`None` above 0x7F).
fn gsm7_basic_char(septet: u8) -> Option<char> {
    GSM7_BASIC.get(usize::from(septet)).copied()
}

/// The character of an extension-table code, if it is defined.
fn gsm7_extension_char(code: u8) -> Option<char> {
    GSM7_EXTENSION
        .iter()
        .find(|&&(c, _)| c == code)
        .map(|&(_, ch)| ch)
}

/// Whether `ch` can be written in GSM 7-bit (default alphabet or extension table).
pub fn is_gsm7(ch: char) -> bool {
    gsm7_code(ch).is_some()
}

// ---------------------------------------------------------------------------------------
// Choosing and counting
// ---------------------------------------------------------------------------------------

/// Best encoding for a text: Gsm7 if every char is in the GSM 03.38 default alphabet or
/// its extension table, else Ucs2.
pub fn choose_encoding(text: &str) -> Encoding {
    if text.chars().all(is_gsm7) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// How a text is cut into SMS parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmentation {
    /// The encoding counted in.
    pub encoding: Encoding,
    /// The number of SMS parts (1 for a text that fits in a single SMS, or is empty).
    pub segments: u32,
    /// The units the whole text takes: septets for gsm7 (an extension character counts
    /// 2), UTF-16 code units for ucs2, bytes for latin1 and binary.
    pub units: u32,
}

/// Segments for `text` in `encoding`: GSM 160 septets single / 153 per part when
/// concatenated (extension chars count 2, an escape pair never split across parts);
/// UCS-2 70 / 67 UTF-16 units (a surrogate pair never split); Latin-1 and binary 140/134
/// bytes (binary counts the text's UTF-8 bytes, as [`encode`] does). An empty text is 1
/// segment.
///
/// A character the encoding cannot write counts as one unit, as the `?` that would
/// replace it; [`split`] refuses such a text.
pub fn segment_count(text: &str, encoding: Encoding) -> Segmentation {
    let parts = plan_parts(text, encoding);
    let units: usize = parts.iter().sum();
    Segmentation {
        encoding,
        segments: saturating_u32(parts.len()),
        units: saturating_u32(units),
    }
}

/// Units a character takes in `encoding` (an unrepresentable one: 1). Not used for
/// binary, whose atoms are bytes.
fn char_units(ch: char, encoding: Encoding) -> usize {
    match encoding {
        Encoding::Gsm7 => match gsm7_code(ch) {
            Some(Gsm7Code::Extended(_)) => 2,
            Some(Gsm7Code::Basic(_)) | None => 1,
        },
        Encoding::Ucs2 => ch.len_utf16(),
        Encoding::Latin1 => 1,
        Encoding::Binary => ch.len_utf8(),
    }
}

/// The units of each part `text` is cut into, in order. Parts are filled greedily; an
/// atom (a character, or a byte for binary) never straddles two parts.
fn plan_parts(text: &str, encoding: Encoding) -> Vec<usize> {
    match encoding {
        Encoding::Binary => plan_atoms(text.bytes().map(|_| 1), encoding),
        _ => plan_atoms(text.chars().map(|ch| char_units(ch, encoding)), encoding),
    }
}

/// [`plan_parts`] over the sizes of the atoms.
fn plan_atoms(atoms: impl Iterator<Item = usize>, encoding: Encoding) -> Vec<usize> {
    let single = encoding.single_part_units() as usize;
    let multi = encoding.multi_part_units() as usize;
    let mut parts = Vec::new();
    let mut current = 0;
    let mut total = 0usize;
    for size in atoms {
        total = total.saturating_add(size);
        if current > 0 && current + size > multi {
            parts.push(current);
            current = 0;
        }
        current += size;
    }
    if total <= single {
        return vec![total];
    }
    parts.push(current);
    parts
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------
// GSM 7-bit
// ---------------------------------------------------------------------------------------

/// Encode to GSM 7-bit unpacked septets (one septet per octet, extension chars as
/// `0x1B` + code). Error if a char is not representable.
pub fn encode_gsm7(text: &str) -> Result<Vec<u8>, EncodeError> {
    let mut septets = Vec::with_capacity(text.len());
    for (index, ch) in text.chars().enumerate() {
        match gsm7_code(ch) {
            Some(Gsm7Code::Basic(code)) => septets.push(code),
            Some(Gsm7Code::Extended(code)) => septets.extend([ESC, code]),
            None => {
                return Err(EncodeError::Unrepresentable {
                    ch,
                    index,
                    encoding: Encoding::Gsm7.as_str(),
                });
            }
        }
    }
    Ok(septets)
}

/// Decode unpacked septets (one per octet).
///
/// Never fails; the choices for what is not a valid character:
/// - an octet above `0x7F` (not a septet) becomes `?`;
/// - an escape followed by a code the extension table does not define becomes that
///   code's default-alphabet character (TS 23.038 6.2.1.1), or `?` above `0x7F`;
/// - an escape followed by another escape (reserved for a further extension table) and a
///   trailing lone escape each become a space, as the TS 23.038 note prescribes.
pub fn decode_gsm7(septets: &[u8]) -> String {
    let mut text = String::with_capacity(septets.len());
    let mut rest = septets.iter().copied();
    while let Some(septet) = rest.next() {
        let ch = if septet == ESC {
            match rest.next() {
                None | Some(ESC) => ' ',
                Some(code) => gsm7_extension_char(code)
                    .or_else(|| gsm7_basic_char(code))
                    .unwrap_or('?'),
            }
        } else {
            gsm7_basic_char(septet).unwrap_or('?')
        };
        text.push(ch);
    }
    text
}

/// Pack septets into octets, 7 bits each, least significant bit first (the GSM packed
/// form of TS 23.038 6.1.2.1). Only the low 7 bits of each input octet are used. The
/// spare bits of the last octet are zero; the receiver needs the septet count (the SMS
/// UDL) to tell a trailing `@` from padding.
pub fn pack_septets(septets: &[u8]) -> Vec<u8> {
    pack_septets_with_fill(septets, 0)
}

/// [`pack_septets`] after `fill_bits` zero bits (0 to 6; more are taken modulo 7), for a
/// body following a UDH so that it starts on a septet boundary. See
/// [`fill_bits_after_udh`].
pub fn pack_septets_with_fill(septets: &[u8], fill_bits: u8) -> Vec<u8> {
    let fill = u32::from(fill_bits % 7);
    let total_bits = septets
        .len()
        .saturating_mul(7)
        .saturating_add(fill as usize);
    let mut octets = Vec::with_capacity(total_bits.div_ceil(8));
    let mut acc: u32 = 0;
    let mut bits = fill;
    for &septet in septets {
        acc |= u32::from(septet & 0x7F) << bits;
        bits += 7;
        while bits >= 8 {
            octets.push((acc & 0xFF) as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        octets.push((acc & 0xFF) as u8);
    }
    octets
}

/// Unpack `septet_count` septets from packed octets, one septet per output octet. If
/// the octets hold fewer septets than asked, only the complete ones are returned.
pub fn unpack_septets(octets: &[u8], septet_count: usize) -> Vec<u8> {
    unpack_septets_with_fill(octets, 0, septet_count)
}

/// [`unpack_septets`] skipping `fill_bits` leading bits (0 to 6; more are taken modulo
/// 7): for the packed body after a UDH, pass the octets after the UDH, the fill from
/// [`fill_bits_after_udh`], and the body's septet count (the UDL less the UDH's septets).
pub fn unpack_septets_with_fill(octets: &[u8], fill_bits: u8, septet_count: usize) -> Vec<u8> {
    let fill = usize::from(fill_bits % 7);
    let available = octets.len().saturating_mul(8).saturating_sub(fill) / 7;
    let count = septet_count.min(available);
    let mut septets = Vec::with_capacity(count);
    for index in 0..count {
        let bit = fill + index * 7;
        let low = octets.get(bit / 8).copied().unwrap_or(0);
        let high = octets.get(bit / 8 + 1).copied().unwrap_or(0);
        let pair = u16::from(low) | (u16::from(high) << 8);
        septets.push(((pair >> (bit % 8)) & 0x7F) as u8);
    }
    septets
}

/// The fill bits between a UDH of `udh_len` octets (its UDHL byte included) and a packed
/// GSM 7-bit body, which must start on a septet boundary.
pub fn fill_bits_after_udh(udh_len: usize) -> u8 {
    ((7 - (udh_len % 7) * 8 % 7) % 7) as u8
}

// ---------------------------------------------------------------------------------------
// UCS-2, Latin-1 and the dispatchers
// ---------------------------------------------------------------------------------------

/// Encode as UTF-16BE (UCS-2 as SMSCs carry it today: characters beyond the BMP become
/// surrogate pairs rather than being refused).
pub fn encode_ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Decode UTF-16BE, lossily: a lone surrogate, and an odd trailing byte, each become
/// U+FFFD REPLACEMENT CHARACTER.
pub fn decode_ucs2(bytes: &[u8]) -> String {
    let chunks = bytes.chunks_exact(2);
    let odd = !chunks.remainder().is_empty();
    let units = chunks.map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    let mut text: String = char::decode_utf16(units)
        .map(|unit| unit.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    if odd {
        text.push(char::REPLACEMENT_CHARACTER);
    }
    text
}

/// Encode as ISO-8859-1, one byte per character. Error for a character above U+00FF.
pub fn encode_latin1(text: &str) -> Result<Vec<u8>, EncodeError> {
    text.chars()
        .enumerate()
        .map(|(index, ch)| {
            u8::try_from(u32::from(ch)).map_err(|_| EncodeError::Unrepresentable {
                ch,
                index,
                encoding: Encoding::Latin1.as_str(),
            })
        })
        .collect()
}

/// Decode ISO-8859-1: every byte is the character of the same number.
pub fn decode_latin1(bytes: &[u8]) -> String {
    bytes.iter().copied().map(char::from).collect()
}

/// Encode text in the given encoding. [`Encoding::Binary`] takes the text's UTF-8 bytes
/// as the payload, so it never fails.
pub fn encode(text: &str, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
    match encoding {
        Encoding::Gsm7 => encode_gsm7(text),
        Encoding::Ucs2 => Ok(encode_ucs2(text)),
        Encoding::Latin1 => encode_latin1(text),
        Encoding::Binary => Ok(text.as_bytes().to_vec()),
    }
}

/// Decode a payload in the given encoding (GSM 7-bit as unpacked septets).
/// [`Encoding::Binary`] is read as UTF-8, lossily (invalid sequences become U+FFFD);
/// keep the bytes themselves where they matter.
pub fn decode(bytes: &[u8], encoding: Encoding) -> String {
    match encoding {
        Encoding::Gsm7 => decode_gsm7(bytes),
        Encoding::Ucs2 => decode_ucs2(bytes),
        Encoding::Latin1 => decode_latin1(bytes),
        Encoding::Binary => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Split `text` into per-part encoded payloads (without UDH) respecting the limits of
/// [`segment_count`]; one part if it fits in a single SMS (an empty text gives one empty
/// part). The number of parts is `segment_count(text, encoding).segments`. A GSM part
/// never ends in a lone escape and a UCS-2 part never ends in a high surrogate, so each
/// part decodes on its own; binary parts are cut at byte boundaries, which may fall
/// inside a UTF-8 sequence.
pub fn split(text: &str, encoding: Encoding) -> Result<Vec<Vec<u8>>, EncodeError> {
    let encoded = encode(text, encoding)?;
    let parts = plan_parts(text, encoding);
    if parts.len() <= 1 {
        return Ok(vec![encoded]);
    }
    let mut rest = encoded.as_slice();
    let mut payloads = Vec::with_capacity(parts.len());
    for units in parts {
        let (part, tail) = rest.split_at((units * encoding.bytes_per_unit()).min(rest.len()));
        payloads.push(part.to_vec());
        rest = tail;
    }
    Ok(payloads)
}

// ---------------------------------------------------------------------------------------
// User data header
// ---------------------------------------------------------------------------------------

/// IEI of a concatenation header with an 8-bit reference.
const IEI_CONCAT_8: u8 = 0x00;
/// IEI of a concatenation header with a 16-bit reference.
const IEI_CONCAT_16: u8 = 0x08;

/// A concatenation header (IEI 0x00 with 8-bit reference, or 0x08 with 16-bit reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    /// The reference shared by every part of one message (only its low byte is sent
    /// unless `wide_reference`).
    pub reference: u16,
    /// The number of parts, from 1.
    pub total: u8,
    /// This part's number, from 1 to `total`.
    pub seq: u8,
    /// Whether the reference is 16-bit (IEI 0x08) rather than 8-bit (IEI 0x00).
    pub wide_reference: bool,
}

/// The full UDH for a concatenated part, its UDHL byte included: 6 octets with an 8-bit
/// reference (`05 00 03 ref total seq`), 7 with a 16-bit one (`06 08 04 ref ref total
/// seq`).
pub fn concat_udh(c: Concat) -> Vec<u8> {
    if c.wide_reference {
        let [high, low] = c.reference.to_be_bytes();
        vec![0x06, IEI_CONCAT_16, 0x04, high, low, c.total, c.seq]
    } else {
        let [_, low] = c.reference.to_be_bytes();
        vec![0x05, IEI_CONCAT_8, 0x03, low, c.total, c.seq]
    }
}

/// A user data header that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdhError {
    /// The payload is empty: not even the UDHL byte.
    #[error("the payload is empty, there is no UDH length")]
    Empty,
    /// The UDHL announces more octets than the payload has.
    #[error("the UDH claims {declared} octets but only {available} follow")]
    Truncated {
        /// The UDHL value.
        declared: usize,
        /// The octets after the UDHL byte.
        available: usize,
    },
    /// An information element runs past the end of the header.
    #[error("information element {iei:#04x} at offset {offset} runs past the end of the UDH")]
    ElementTruncated {
        /// The element's identifier.
        iei: u8,
        /// Its offset in the payload.
        offset: usize,
    },
    /// A concatenation element whose length is not the one its IEI requires.
    #[error("concatenation element {iei:#04x} has length {len}")]
    BadConcatLength {
        /// The element's identifier.
        iei: u8,
        /// Its length octet.
        len: usize,
    },
}

/// Parse a UDH at the start of `payload` (when esm_class has UDHI): returns the Concat IE
/// if present, and the body after the UDH. Err on a malformed/truncated header (never
/// panics).
///
/// Following TS 23.040 9.2.3.24: elements other than concatenation are skipped; of
/// repeated concatenation elements the last counts; and one whose values are impossible
/// (a total or number of 0, or a number above the total) is ignored, as if absent. For a
/// packed GSM 7-bit body, the returned body still starts with the fill bits (see
/// [`fill_bits_after_udh`]).
pub fn parse_udh(payload: &[u8]) -> Result<(Option<Concat>, &[u8]), UdhError> {
    let (&udhl, after_udhl) = payload.split_first().ok_or(UdhError::Empty)?;
    let declared = usize::from(udhl);
    if after_udhl.len() < declared {
        return Err(UdhError::Truncated {
            declared,
            available: after_udhl.len(),
        });
    }
    let (mut elements, body) = after_udhl.split_at(declared);
    let mut offset = 1;
    let mut concat = None;
    while let Some((&iei, after_iei)) = elements.split_first() {
        let truncated = UdhError::ElementTruncated { iei, offset };
        let (&len, after_len) = after_iei.split_first().ok_or(truncated.clone())?;
        let len = usize::from(len);
        if after_len.len() < len {
            return Err(truncated);
        }
        let (data, next) = after_len.split_at(len);
        let found = match (iei, data) {
            (IEI_CONCAT_8, &[reference, total, seq]) => Some(Concat {
                reference: u16::from(reference),
                total,
                seq,
                wide_reference: false,
            }),
            (IEI_CONCAT_16, &[high, low, total, seq]) => Some(Concat {
                reference: u16::from_be_bytes([high, low]),
                total,
                seq,
                wide_reference: true,
            }),
            (IEI_CONCAT_8 | IEI_CONCAT_16, _) => {
                return Err(UdhError::BadConcatLength { iei, len });
            }
            _ => None,
        };
        if let Some(found) = found.filter(|c| c.total > 0 && c.seq > 0 && c.seq <= c.total) {
            concat = Some(found);
        }
        offset += 2 + len;
        elements = next;
    }
    Ok((concat, body))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn repeat(ch: char, n: usize) -> String {
        std::iter::repeat_n(ch, n).collect()
    }

    fn seg(text: &str, encoding: Encoding) -> (u32, u32) {
        let s = segment_count(text, encoding);
        (s.segments, s.units)
    }

    fn part_lens(text: &str, encoding: Encoding) -> Vec<usize> {
        split(text, encoding)
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect()
    }

    #[test]
    fn names_and_data_codings() {
        for encoding in ALL_ENCODINGS {
            assert_eq!(encoding.as_str().parse::<Encoding>(), Ok(encoding));
            assert_eq!(encoding.to_string(), encoding.as_str());
            assert_eq!(
                Encoding::from_data_coding(encoding.data_coding()),
                Some(encoding)
            );
            let json = serde_json::to_string(&encoding).unwrap();
            assert_eq!(json, format!("\"{}\"", encoding.as_str()));
        }
        assert_eq!(Encoding::Gsm7.data_coding(), 0x00);
        assert_eq!(Encoding::Latin1.data_coding(), 0x03);
        assert_eq!(Encoding::Binary.data_coding(), 0x04);
        assert_eq!(Encoding::Ucs2.data_coding(), 0x08);
        assert_eq!(
            "UTF8".parse::<Encoding>(),
            Err(UnknownEncoding("UTF8".into()))
        );
        assert_eq!(Encoding::from_data_coding(0x05), None);
    }

    #[test]
    fn gsm7_boundaries() {
        assert_eq!(seg("", Encoding::Gsm7), (1, 0));
        assert_eq!(seg(&repeat('a', 160), Encoding::Gsm7), (1, 160));
        assert_eq!(seg(&repeat('a', 161), Encoding::Gsm7), (2, 161));
        assert_eq!(seg(&repeat('a', 306), Encoding::Gsm7), (2, 306));
        assert_eq!(seg(&repeat('a', 307), Encoding::Gsm7), (3, 307));
        // Extension characters count twice: 80 of them fill one SMS exactly.
        assert_eq!(seg(&repeat('€', 80), Encoding::Gsm7), (1, 160));
        assert_eq!(seg(&(repeat('€', 80) + "a"), Encoding::Gsm7), (2, 161));
        assert_eq!(part_lens(&repeat('a', 161), Encoding::Gsm7), [153, 8]);
        assert_eq!(part_lens(&repeat('a', 160), Encoding::Gsm7), [160]);
        assert_eq!(split("", Encoding::Gsm7), Ok(vec![vec![]]));
    }

    #[test]
    fn gsm7_escape_pair_moves_whole_to_the_next_part() {
        // 152 + 2 septets would straddle the 153 boundary.
        let text = repeat('a', 152) + "€" + &repeat('a', 10);
        assert_eq!(seg(&text, Encoding::Gsm7), (2, 164));
        let parts = split(&text, Encoding::Gsm7).unwrap();
        assert_eq!(parts[0], vec![0x61; 152]);
        assert_eq!(parts[1][..2], [0x1B, 0x65]);
        assert_eq!(parts[1].len(), 12);
        // 306 septets would fit two full parts, but the moved pair forces a third.
        let text = repeat('a', 152) + "€" + &repeat('a', 152);
        assert_eq!(seg(&text, Encoding::Gsm7), (3, 306));
        assert_eq!(part_lens(&text, Encoding::Gsm7), [152, 153, 1]);
        let text = repeat('a', 152) + "€" + &repeat('a', 151);
        assert_eq!(seg(&text, Encoding::Gsm7), (2, 305));
    }

    #[test]
    fn ucs2_boundaries() {
        assert_eq!(seg(&repeat('ж', 70), Encoding::Ucs2), (1, 70));
        assert_eq!(seg(&repeat('ж', 71), Encoding::Ucs2), (2, 71));
        assert_eq!(seg(&repeat('ж', 134), Encoding::Ucs2), (2, 134));
        assert_eq!(seg(&repeat('ж', 135), Encoding::Ucs2), (3, 135));
        assert_eq!(part_lens(&repeat('ж', 71), Encoding::Ucs2), [134, 8]);
        // An emoji as units 69 and 70 still fits a single SMS.
        assert_eq!(seg(&(repeat('a', 68) + "😀"), Encoding::Ucs2), (1, 70));
    }

    #[test]
    fn ucs2_surrogate_pair_moves_whole_to_the_next_part() {
        // Units 67 and 68 would hold the emoji: it goes to part two.
        let text = repeat('a', 66) + "😀" + &repeat('a', 10);
        assert_eq!(seg(&text, Encoding::Ucs2), (2, 78));
        let parts = split(&text, Encoding::Ucs2).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].len(), 132);
        assert_eq!(parts[1][..4], [0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(decode_ucs2(&parts[0]), repeat('a', 66));
        assert_eq!(decode_ucs2(&parts[1]), "😀".to_owned() + &repeat('a', 10));
    }

    #[test]
    fn latin1_and_binary_boundaries() {
        assert_eq!(seg(&repeat('é', 140), Encoding::Latin1), (1, 140));
        assert_eq!(seg(&repeat('é', 141), Encoding::Latin1), (2, 141));
        assert_eq!(seg(&repeat('é', 268), Encoding::Latin1), (2, 268));
        assert_eq!(seg(&repeat('é', 269), Encoding::Latin1), (3, 269));
        // Binary counts UTF-8 bytes: 'é' is two.
        assert_eq!(seg(&repeat('é', 70), Encoding::Binary), (1, 140));
        assert_eq!(seg(&repeat('é', 71), Encoding::Binary), (2, 142));
        assert_eq!(part_lens(&repeat('é', 71), Encoding::Binary), [134, 8]);
    }

    #[test]
    fn unrepresentable_characters_count_as_one_unit() {
        assert_eq!(seg("a😀b", Encoding::Gsm7), (1, 3));
        assert_eq!(seg("a😀b", Encoding::Latin1), (1, 3));
    }

    #[test]
    fn choosing_an_encoding() {
        assert_eq!(choose_encoding(""), Encoding::Gsm7);
        assert_eq!(choose_encoding("Hello, world! 123"), Encoding::Gsm7);
        assert_eq!(choose_encoding("Price: 5€"), Encoding::Gsm7);
        assert_eq!(choose_encoding("[x] {y} ~z^ a|b \\"), Encoding::Gsm7);
        assert_eq!(choose_encoding("café"), Encoding::Gsm7);
        assert_eq!(choose_encoding("ΔΦΓΛΩΠΨΣΘΞ"), Encoding::Gsm7);
        assert_eq!(choose_encoding("Ça va"), Encoding::Gsm7);
        assert_eq!(choose_encoding("ça va"), Encoding::Ucs2);
        assert_eq!(choose_encoding("hi 😀"), Encoding::Ucs2);
        assert_eq!(choose_encoding("` backtick"), Encoding::Ucs2);
        assert_eq!(choose_encoding("\t"), Encoding::Ucs2);
        assert_eq!(choose_encoding("\u{1B}"), Encoding::Ucs2);
        assert_eq!(choose_encoding("α"), Encoding::Ucs2);
    }

    #[test]
    fn gsm7_tables_are_consistent() {
        for (code, &ch) in GSM7_BASIC.iter().enumerate() {
            if code == usize::from(ESC) {
                continue;
            }
            let code = u8::try_from(code).unwrap();
            assert_eq!(gsm7_code(ch), Some(Gsm7Code::Basic(code)), "{ch:?}");
        }
        for (code, ch) in GSM7_EXTENSION {
            assert_eq!(gsm7_code(ch), Some(Gsm7Code::Extended(code)), "{ch:?}");
        }
        let distinct: std::collections::HashSet<char> = GSM7_BASIC.into_iter().collect();
        assert_eq!(
            distinct.len(),
            127,
            "only the escape slot repeats the space"
        );
    }

    #[test]
    fn gsm7_fixtures() {
        assert_eq!(encode_gsm7("@"), Ok(vec![0x00]));
        assert_eq!(encode_gsm7("€"), Ok(vec![0x1B, 0x65]));
        assert_eq!(encode_gsm7("hello"), Ok(vec![0x68, 0x65, 0x6C, 0x6C, 0x6F]));
        assert_eq!(
            encode_gsm7("£$¥èéùìòÇ\nØø\rÅå"),
            Ok((0x01..=0x0F).collect::<Vec<u8>>())
        );
        assert_eq!(
            encode_gsm7("Δ_ΦΓΛΩΠΨΣΘΞ"),
            Ok((0x10..=0x1A).collect::<Vec<u8>>())
        );
        assert_eq!(
            encode_gsm7("ÆæßÉ ¤¡ÄÖÑÜ§¿äöñüà"),
            Ok(vec![
                0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x24, 0x40, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F, 0x60, 0x7B,
                0x7C, 0x7D, 0x7E, 0x7F
            ])
        );
        assert_eq!(
            encode_gsm7("\u{0C}^{}\\[~]|"),
            Ok(vec![
                0x1B, 0x0A, 0x1B, 0x14, 0x1B, 0x28, 0x1B, 0x29, 0x1B, 0x2F, 0x1B, 0x3C, 0x1B, 0x3D,
                0x1B, 0x3E, 0x1B, 0x40
            ])
        );
        assert_eq!(
            encode_gsm7("ab ç"),
            Err(EncodeError::Unrepresentable {
                ch: 'ç',
                index: 3,
                encoding: "gsm7"
            })
        );
        assert_eq!(
            encode_gsm7("€$`").unwrap_err().to_string(),
            "character '`' at 2 cannot be written in gsm7"
        );

        assert_eq!(decode_gsm7(&[0x00]), "@");
        assert_eq!(decode_gsm7(&[0x1B, 0x65, 0x31]), "€1");
        // Undefined extension code: the default-alphabet character.
        assert_eq!(decode_gsm7(&[0x1B, 0x41]), "A");
        // Escape-escape and a trailing escape: a space.
        assert_eq!(decode_gsm7(&[0x41, 0x1B, 0x1B, 0x42]), "A B");
        assert_eq!(decode_gsm7(&[0x41, 0x1B]), "A ");
        // Not septets.
        assert_eq!(decode_gsm7(&[0x80, 0x41, 0xFF, 0x1B, 0x9B]), "?A??");
    }

    #[test]
    fn packing_fixtures() {
        let hello = encode_gsm7("hello").unwrap();
        assert_eq!(pack_septets(&hello), [0xE8, 0x32, 0x9B, 0xFD, 0x06]);
        assert_eq!(unpack_septets(&[0xE8, 0x32, 0x9B, 0xFD, 0x06], 5), hello);
        // Eight septets fill seven octets exactly.
        let eight = encode_gsm7("hellohel").unwrap();
        assert_eq!(pack_septets(&eight).len(), 7);
        assert_eq!(unpack_septets(&pack_septets(&eight), 8), eight);
        // Asking for more septets than there are gives the complete ones.
        assert_eq!(unpack_septets(&[0xE8, 0x32], 9), [0x68, 0x65]);
        assert_eq!(unpack_septets(&[], usize::MAX), Vec::<u8>::new());
        assert_eq!(pack_septets(&[]), Vec::<u8>::new());
        // After a 6-octet UDH, one fill bit.
        assert_eq!(fill_bits_after_udh(6), 1);
        assert_eq!(fill_bits_after_udh(7), 0);
        assert_eq!(fill_bits_after_udh(0), 0);
        assert_eq!(fill_bits_after_udh(1), 6);
        assert_eq!(
            pack_septets_with_fill(&hello, 1),
            [0xD0, 0x65, 0x36, 0xFB, 0x0D]
        );
        assert_eq!(
            unpack_septets_with_fill(&[0xD0, 0x65, 0x36, 0xFB, 0x0D], 1, 5),
            hello
        );
    }

    #[test]
    fn ucs2_and_latin1_fixtures() {
        assert_eq!(encode_ucs2("Aж€"), [0x00, 0x41, 0x04, 0x36, 0x20, 0xAC]);
        assert_eq!(encode_ucs2("😀"), [0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(decode_ucs2(&[0x00, 0x41, 0xD8, 0x3D]), "A\u{FFFD}");
        assert_eq!(decode_ucs2(&[0x00, 0x41, 0x00]), "A\u{FFFD}");
        assert_eq!(encode_latin1("café ÿ"), Ok(b"caf\xE9 \xFF".to_vec()));
        assert_eq!(decode_latin1(b"caf\xE9"), "café");
        assert_eq!(
            encode_latin1("1€"),
            Err(EncodeError::Unrepresentable {
                ch: '€',
                index: 1,
                encoding: "latin1"
            })
        );
        assert_eq!(encode("hé", Encoding::Binary), Ok("hé".as_bytes().to_vec()));
        assert_eq!(decode(&[0x68, 0xFF], Encoding::Binary), "h\u{FFFD}");
        assert_eq!(encode("@", Encoding::Gsm7), Ok(vec![0x00]));
        assert_eq!(decode(&[0x00, 0x41], Encoding::Ucs2), "A");
        assert!(split("😀", Encoding::Gsm7).is_err());
    }

    #[test]
    fn udh_fixtures() {
        let narrow = Concat {
            reference: 0x1234,
            total: 3,
            seq: 2,
            wide_reference: false,
        };
        let udh = concat_udh(narrow);
        assert_eq!(udh, [0x05, 0x00, 0x03, 0x34, 0x03, 0x02]);
        let payload = [udh.as_slice(), b"body"].concat();
        let (concat, body) = parse_udh(&payload).unwrap();
        assert_eq!(
            concat,
            Some(Concat {
                reference: 0x34,
                ..narrow
            })
        );
        assert_eq!(body, b"body");

        let wide = Concat {
            reference: 0xBEEF,
            total: 2,
            seq: 1,
            wide_reference: true,
        };
        let udh = concat_udh(wide);
        assert_eq!(udh, [0x06, 0x08, 0x04, 0xBE, 0xEF, 0x02, 0x01]);
        assert_eq!(parse_udh(&udh), Ok((Some(wide), &[][..])));

        // Other elements are skipped; the concatenation element is found after them.
        let payload = [0x08, 0x24, 0x01, 0x01, 0x00, 0x03, 0x07, 0x02, 0x02, 0xAA];
        let (concat, body) = parse_udh(&payload).unwrap();
        assert_eq!(
            concat,
            Some(Concat {
                reference: 7,
                total: 2,
                seq: 2,
                wide_reference: false
            })
        );
        assert_eq!(body, [0xAA]);
        // No elements at all.
        assert_eq!(parse_udh(&[0x00, 0x41]), Ok((None, &[0x41][..])));
        // Impossible values: the element is ignored.
        assert_eq!(
            parse_udh(&[0x05, 0x00, 0x03, 0x01, 0x02, 0x03]),
            Ok((None, &[][..]))
        );
        assert_eq!(
            parse_udh(&[0x05, 0x00, 0x03, 0x01, 0x00, 0x00]),
            Ok((None, &[][..]))
        );
    }

    #[test]
    fn malformed_udh_is_an_error() {
        assert_eq!(parse_udh(&[]), Err(UdhError::Empty));
        // UDHL longer than the payload.
        assert_eq!(
            parse_udh(&[0x05, 0x00, 0x03, 0x01]),
            Err(UdhError::Truncated {
                declared: 5,
                available: 3
            })
        );
        // IE length past the end of the header (though not of the payload).
        assert_eq!(
            parse_udh(&[0x03, 0x00, 0x03, 0x01, 0x02, 0x01]),
            Err(UdhError::ElementTruncated {
                iei: 0x00,
                offset: 1
            })
        );
        // An IEI with no length octet.
        assert_eq!(
            parse_udh(&[0x04, 0x24, 0x01, 0x00, 0x08]),
            Err(UdhError::ElementTruncated {
                iei: 0x08,
                offset: 4
            })
        );
        // A concatenation element of the wrong length.
        assert_eq!(
            parse_udh(&[0x04, 0x00, 0x02, 0x01, 0x02]),
            Err(UdhError::BadConcatLength { iei: 0x00, len: 2 })
        );
        assert_eq!(
            parse_udh(&[0x05, 0x08, 0x03, 0x01, 0x02, 0x01]),
            Err(UdhError::BadConcatLength { iei: 0x08, len: 3 })
        );
    }

    /// Every character GSM 7-bit can write.
    fn gsm7_chars() -> Vec<char> {
        GSM7_BASIC
            .iter()
            .enumerate()
            .filter(|&(code, _)| code != usize::from(ESC))
            .map(|(_, &ch)| ch)
            .chain(GSM7_EXTENSION.iter().map(|&(_, ch)| ch))
            .collect()
    }

    fn gsm7_text() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(gsm7_chars()), 0..400)
            .prop_map(|chars| chars.into_iter().collect())
    }

    /// Any text, weighted towards the characters that sit awkwardly on part boundaries.
    fn any_text() -> impl Strategy<Value = String> {
        let ch = prop_oneof![
            4 => prop::char::range('a', 'z'),
            1 => any::<char>(),
            1 => Just('😀'),
            1 => Just('€'),
        ];
        prop::collection::vec(ch, 0..300).prop_map(|chars| chars.into_iter().collect())
    }

    fn latin1_text() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::char::range('\0', 'ÿ'), 0..400)
            .prop_map(|chars| chars.into_iter().collect())
    }

    /// The properties every split must have.
    fn check_split(text: &str, encoding: Encoding) -> Result<(), TestCaseError> {
        let parts = split(text, encoding).unwrap();
        let segmentation = segment_count(text, encoding);
        prop_assert_eq!(parts.len(), segmentation.segments as usize);
        let limit = if parts.len() == 1 {
            encoding.single_part_units()
        } else {
            encoding.multi_part_units()
        } as usize
            * encoding.bytes_per_unit();
        for part in &parts {
            prop_assert!(part.len() <= limit, "part of {} > {limit}", part.len());
            prop_assert!(parts.len() == 1 || !part.is_empty());
            match encoding {
                Encoding::Gsm7 => {
                    prop_assert_ne!(part.last(), Some(&ESC));
                }
                Encoding::Ucs2 => {
                    let n = part.len();
                    prop_assert!(n < 2 || !(0xD8..=0xDB).contains(&part[n - 2]));
                }
                Encoding::Latin1 | Encoding::Binary => {}
            }
        }
        let units: usize = parts.iter().map(Vec::len).sum::<usize>() / encoding.bytes_per_unit();
        prop_assert_eq!(units, segmentation.units as usize);
        prop_assert_eq!(decode(&parts.concat(), encoding), text);
        if encoding != Encoding::Binary {
            let each: String = parts.iter().map(|part| decode(part, encoding)).collect();
            prop_assert_eq!(each, text);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn gsm7_round_trip(text in gsm7_text()) {
            prop_assert_eq!(choose_encoding(&text), Encoding::Gsm7);
            prop_assert_eq!(decode_gsm7(&encode_gsm7(&text).unwrap()), text);
        }

        #[test]
        fn pack_round_trip(
            septets in prop::collection::vec(0u8..0x80, 0..400),
            fill in 0u8..7,
        ) {
            let packed = pack_septets(&septets);
            prop_assert_eq!(packed.len(), (septets.len() * 7).div_ceil(8));
            prop_assert_eq!(unpack_septets(&packed, septets.len()), septets.clone());
            let packed = pack_septets_with_fill(&septets, fill);
            prop_assert_eq!(unpack_septets_with_fill(&packed, fill, septets.len()), septets);
        }

        #[test]
        fn ucs2_round_trip(text in any::<String>()) {
            prop_assert_eq!(decode_ucs2(&encode_ucs2(&text)), text);
        }

        #[test]
        fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            for encoding in ALL_ENCODINGS {
                let _ = decode(&bytes, encoding);
            }
            let _ = unpack_septets(&bytes, bytes.len() * 2);
            let _ = parse_udh(&bytes);
        }

        #[test]
        fn split_gsm7(text in gsm7_text()) {
            check_split(&text, Encoding::Gsm7)?;
        }

        #[test]
        fn split_ucs2(text in any_text()) {
            check_split(&text, Encoding::Ucs2)?;
        }

        #[test]
        fn split_latin1(text in latin1_text()) {
            check_split(&text, Encoding::Latin1)?;
        }

        #[test]
        fn split_binary(text in any_text()) {
            check_split(&text, Encoding::Binary)?;
        }

        #[test]
        fn concat_udh_round_trip(
            reference in any::<u16>(),
            total in 1u8..=255,
            seq in 1u8..=255,
            wide in any::<bool>(),
        ) {
            let seq = seq.min(total);
            let c = Concat { reference, total, seq, wide_reference: wide };
            let udh = concat_udh(c);
            let expected = Concat {
                reference: if wide { reference } else { reference & 0xFF },
                ..c
            };
            prop_assert_eq!(parse_udh(&udh), Ok((Some(expected), &[][..])));
        }
    }
}

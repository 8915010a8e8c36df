//! PROXY protocol headers from a load balancer (v1 text, v2 binary), as
//! `accept_proxy_protocol` listeners read them: the first bytes
//! recognised, the header's length found, the header parsed.
//!
//! Input: the bytes a connection starts with. Checked besides "no panic":
//! a length is never past the bytes it was found in (v1) nor below the
//! fixed part (v2), so the reader never takes more than the header; and
//! what `recognise` calls a v1 or v2 start is what the lengths read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sniwalk::proxy::proxy_header::{
    Start, V1_MAX_LENGTH, V2_FIXED_LENGTH, parse_v1, parse_v2, recognise, v1_length, v2_length,
};

fuzz_target!(|data: &[u8]| {
    let start = recognise(data);
    if start == Start::V1
        && let Ok(Some(length)) = v1_length(data)
    {
        assert!(
            length <= data.len() && length <= V1_MAX_LENGTH,
            "v1 length {length}"
        );
        assert_eq!(
            &data[length - 2..length],
            b"\r\n",
            "a v1 header ends in CRLF"
        );
        let _ = parse_v1(&data[..length]);
    }
    if start == Start::V2
        && let Some(fixed) = data.get(..V2_FIXED_LENGTH)
        && let Ok(length) = v2_length(fixed.try_into().expect("16 bytes"))
    {
        assert!(length >= V2_FIXED_LENGTH, "v2 length {length}");
        if let Some(header) = data.get(..length) {
            let _ = parse_v2(header);
        }
    }
    // The parsers take any bytes, whole header or not.
    let _ = parse_v1(data);
    let _ = parse_v2(data);
});

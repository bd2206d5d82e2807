//! Arbitrary bytes as the TPM's answer to TPM2_PCR_Read (what
//! `/dev/tpmrm0` returns is the device's word, not ours): the parser never
//! panics and never reads past the response; a digest it accepts is 32
//! bytes of the response, after a header whose size field matches the
//! length and whose response code is 0.
#![no_main]

use libfuzzer_sys::fuzz_target;

use kmodinit_init::kernel::tpm::parse_read_response;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = parse_read_response(data) {
        assert!(data.len() >= 10 + 32, "{} bytes", data.len());
        let size = u32::from_be_bytes([data[2], data[3], data[4], data[5]]) as usize;
        assert_eq!(size, data.len());
        assert_eq!(&data[6..10], &[0, 0, 0, 0]);
        assert!(
            data.windows(32).any(|w| w == d),
            "the digest comes from the response"
        );
    }
});

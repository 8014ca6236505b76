//! PostgreSQL's binary `COPY` format for `flight_data` rows.
//!
//! The format (PostgreSQL docs, "COPY: Binary Format"): a fixed header, then per row a
//! 16-bit field count and per field a 32-bit length (-1 for NULL) followed by the value
//! in the type's binary send format (big-endian integers and IEEE floats, UTF-8 text,
//! `timestamptz` as microseconds since 2000-01-01 UTC), then a 16-bit -1 trailer.
//!
//! NB: binary rather than text COPY: nothing to escape, and the server parses no
//! numbers or timestamps. PostgreSQL still checks every value on receipt (UTF-8 text
//! without NUL bytes, timestamps in range), with the same SQLSTATEs as the `INSERT`
//! path: a bad value fails the statement as a data error (class 22), never lands
//! silently. `tests/sink.rs` checks these bytes against PostgreSQL's own
//! `COPY … TO STDOUT (FORMAT binary)` of the same rows.

/// Signature, flags (no OIDs) and header-extension length.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The file trailer: a field count of -1.
pub const TRAILER: &[u8] = &(-1i16).to_be_bytes();

/// Seconds from the Unix epoch to PostgreSQL's, 2000-01-01 00:00:00 UTC.
const POSTGRES_EPOCH_UNIX: i64 = 946_684_800;

/// Appends values of one row to a buffer.
#[derive(Debug)]
pub struct RowWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> RowWriter<'a> {
    /// Starts a row of `fields` values.
    pub fn start(buf: &'a mut Vec<u8>, fields: i16) -> Self {
        buf.extend_from_slice(&fields.to_be_bytes());
        Self { buf }
    }

    fn value(&mut self, bytes: &[u8]) {
        // NB: a Kafka record (and so any field of it) is far below 2 GiB; a longer value
        // could not be sent in one `CopyData` message anyway.
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// `text`.
    pub fn text(&mut self, v: &str) {
        self.value(v.as_bytes());
    }

    /// `text`, or NULL.
    pub fn opt_text(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    /// `double precision`.
    pub fn float8(&mut self, v: f64) {
        self.value(&v.to_be_bytes());
    }

    /// `double precision`, or NULL.
    pub fn opt_float8(&mut self, v: Option<f64>) {
        match v {
            Some(v) => self.float8(v),
            None => self.null(),
        }
    }

    /// `boolean`.
    pub fn bool(&mut self, v: bool) {
        self.value(&[u8::from(v)]);
    }

    /// `smallint`.
    pub fn int2(&mut self, v: i16) {
        self.value(&v.to_be_bytes());
    }

    /// `smallint`, or NULL.
    pub fn opt_int2(&mut self, v: Option<i16>) {
        match v {
            Some(v) => self.int2(v),
            None => self.null(),
        }
    }

    /// `timestamptz` from Unix seconds.
    pub fn timestamptz(&mut self, unix_seconds: i64) {
        let micros = unix_seconds
            .checked_sub(POSTGRES_EPOCH_UNIX)
            .and_then(|s| s.checked_mul(1_000_000))
            // NB: not saturating to i64::MAX/MIN: PostgreSQL reads those as ±infinity
            // and would store them. One below is out of its range and rejected with
            // SQLSTATE 22008, exactly what `to_timestamp` says about such a value.
            .unwrap_or(if unix_seconds < 0 {
                i64::MIN + 1
            } else {
                i64::MAX - 1
            });
        self.value(&micros.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_its_field_count_then_length_prefixed_big_endian_values() {
        let mut buf = Vec::new();
        let mut row = RowWriter::start(&mut buf, 5);
        row.text("3c6444");
        row.opt_text(None);
        row.int2(3);
        row.bool(true);
        row.timestamptz(POSTGRES_EPOCH_UNIX + 1);
        assert_eq!(
            buf,
            [
                &[0, 5][..],
                &[0, 0, 0, 6],
                b"3c6444",
                &[0xff, 0xff, 0xff, 0xff],
                &[0, 0, 0, 2, 0, 3],
                &[0, 0, 0, 1, 1],
                &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40],
            ]
            .concat()
        );
    }

    #[test]
    fn a_timestamp_beyond_i64_micros_is_sent_out_of_range_never_as_infinity() {
        for (seconds, micros) in [(i64::MAX, i64::MAX - 1), (i64::MIN, i64::MIN + 1)] {
            let mut buf = Vec::new();
            RowWriter::start(&mut buf, 1).timestamptz(seconds);
            assert_eq!(buf[6..], micros.to_be_bytes());
        }
    }
}

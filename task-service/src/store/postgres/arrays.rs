//! One-dimensional array columns read in place, from PostgreSQL's binary format.
//!
//! A page comes as one array per column (see [`super::lists`]). sqlx's `Vec<T>` decoding
//! makes a value reference, with a copy of its type, for every element before decoding it,
//! and a page's `String`s are then moved again into its tasks: that was 13% of the task
//! service's CPU on a page of 50 (perf, `ListTasks` at 50 in flight). Here an array is walked
//! over the row's own bytes, and each element is decoded where it lies; the text of a task is
//! copied once, into its record.
//!
//! The binary format (`array_send` in PostgreSQL's `arrayfuncs.c`): the number of
//! dimensions, a has-nulls flag and the element type's OID (4 bytes each, big-endian), then
//! the length and lower bound of each dimension, then each element as its length (-1 for
//! `NULL`) and its bytes in the element type's own binary format.

use sqlx::{
    Row, ValueRef,
    error::BoxDynError,
    postgres::{PgRow, PgValueFormat},
};

/// An element type, by its binary format.
pub trait Element<'r>: Sized {
    /// The OID PostgreSQL names the element type by (`pg_type.oid`).
    const OID: u32;
    /// The element from its bytes.
    fn decode(bytes: &'r [u8]) -> Result<Self, BoxDynError>;
}

impl<'r> Element<'r> for &'r str {
    const OID: u32 = 25; // text
    fn decode(bytes: &'r [u8]) -> Result<Self, BoxDynError> {
        Ok(std::str::from_utf8(bytes)?)
    }
}

impl Element<'_> for i64 {
    const OID: u32 = 20; // int8
    fn decode(bytes: &[u8]) -> Result<Self, BoxDynError> {
        Ok(i64::from_be_bytes(bytes.try_into()?))
    }
}

impl Element<'_> for bool {
    const OID: u32 = 16; // bool
    fn decode(bytes: &[u8]) -> Result<Self, BoxDynError> {
        match bytes {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(format!("a bool of {} bytes", bytes.len()).into()),
        }
    }
}

/// The elements of one array, each decoded as it is reached. An array with a `NULL` element,
/// or that ends early, yields an error at that element.
#[derive(Debug)]
pub struct Elements<'r, T> {
    rest: &'r [u8],
    left: usize,
    element: std::marker::PhantomData<T>,
}

impl<'r, T: Element<'r>> Elements<'r, T> {
    /// The array in column `index` of `row`; `None` when the column is `NULL`.
    pub fn of(row: &'r PgRow, index: usize) -> Result<Option<Self>, BoxDynError> {
        let value = row.try_get_raw(index)?;
        if value.is_null() {
            return Ok(None);
        }
        if value.format() != PgValueFormat::Binary {
            return Err("an array in text format".into());
        }
        Self::parse(value.as_bytes()?).map(Some)
    }

    /// The array in `bytes`, in the binary format.
    fn parse(bytes: &'r [u8]) -> Result<Self, BoxDynError> {
        let mut reader = Reader(bytes);
        let dimensions = reader.int()?;
        let _has_nulls = reader.int()?;
        let oid = u32::from_be_bytes(reader.take(4)?.try_into()?);
        if oid != T::OID {
            return Err(format!("an array of type {oid}, not of {}", T::OID).into());
        }
        let left = match dimensions {
            0 => 0,
            1 => {
                let len = reader.int()?;
                let _lower_bound = reader.int()?;
                usize::try_from(len).map_err(|_| format!("an array of length {len}"))?
            }
            _ => return Err(format!("an array of {dimensions} dimensions").into()),
        };
        Ok(Self {
            rest: reader.0,
            left,
            element: std::marker::PhantomData,
        })
    }

    /// How many elements are left.
    pub fn len(&self) -> usize {
        self.left
    }
}

impl<'r, T: Element<'r>> Iterator for Elements<'r, T> {
    type Item = Result<T, BoxDynError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut reader = Reader(self.rest);
        let element = reader.int().and_then(|len| {
            let len = usize::try_from(len).map_err(|_| "a NULL element")?;
            reader.take(len)
        });
        self.rest = reader.0;
        Some(element.and_then(T::decode))
    }
}

/// Bytes read from the front.
struct Reader<'r>(&'r [u8]);

impl<'r> Reader<'r> {
    fn take(&mut self, len: usize) -> Result<&'r [u8], BoxDynError> {
        if self.0.len() < len {
            return Err("an array shorter than its header says".into());
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    fn int(&mut self) -> Result<i32, BoxDynError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `values` as `array_send` writes a one-dimensional array of type `oid`.
    fn array(oid: u32, values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend(1_i32.to_be_bytes());
        bytes.extend(i32::from(values.iter().any(Option::is_none)).to_be_bytes());
        bytes.extend(oid.to_be_bytes());
        bytes.extend(i32::try_from(values.len()).unwrap().to_be_bytes());
        bytes.extend(1_i32.to_be_bytes());
        for value in values {
            match value {
                Some(value) => {
                    bytes.extend(i32::try_from(value.len()).unwrap().to_be_bytes());
                    bytes.extend(*value);
                }
                None => bytes.extend((-1_i32).to_be_bytes()),
            }
        }
        bytes
    }

    fn all<'r, T: Element<'r>>(bytes: &'r [u8]) -> Result<Vec<T>, BoxDynError> {
        Elements::<T>::parse(bytes)?.collect()
    }

    #[test]
    fn elements_decode_in_order() {
        let texts = array(25, &[Some(b"a"), Some("é ✓".as_bytes()), Some(b"")]);
        assert_eq!(all::<&str>(&texts).unwrap(), ["a", "é ✓", ""]);
        assert_eq!(Elements::<&str>::parse(&texts).unwrap().len(), 3);

        let (one, min) = (1_i64.to_be_bytes(), i64::MIN.to_be_bytes());
        let ints = array(20, &[Some(&one), Some(&min)]);
        assert_eq!(all::<i64>(&ints).unwrap(), [1, i64::MIN]);

        let bools = array(16, &[Some(&[1]), Some(&[0])]);
        assert_eq!(all::<bool>(&bools).unwrap(), [true, false]);
    }

    #[test]
    fn an_empty_array_has_no_elements() {
        let mut empty = Vec::new();
        for int in [0_i32, 0, 25] {
            empty.extend(int.to_be_bytes());
        }
        assert_eq!(all::<&str>(&empty).unwrap(), Vec::<&str>::new());
    }

    #[test]
    fn malformed_arrays_are_errors_not_panics() {
        let texts = array(25, &[Some(b"a"), Some(b"b")]);
        // Another element type, a NULL, a cut at every length, bad UTF-8, odd widths.
        assert!(all::<i64>(&texts).is_err());
        assert!(all::<&str>(&array(25, &[Some(b"a"), None])).is_err());
        for len in 0..texts.len() {
            assert!(all::<&str>(&texts[..len]).is_err(), "cut at {len}");
        }
        assert!(all::<&str>(&array(25, &[Some(&[0xff])])).is_err());
        assert!(all::<i64>(&array(20, &[Some(&[0; 4])])).is_err());
        assert!(all::<bool>(&array(16, &[Some(&[2])])).is_err());
        let mut two_dimensions = texts.clone();
        two_dimensions[..4].copy_from_slice(&2_i32.to_be_bytes());
        assert!(Elements::<&str>::parse(&two_dimensions).is_err());
    }
}

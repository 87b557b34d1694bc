//! Assertions the test crates share.

/// Pairs two lists item by item once they are shown to be equally long: a plain `zip` stops
/// at the shorter one, so a short list would check fewer items and pass.
pub fn zip_eq<A, B>(a: A, b: B, what: &str) -> std::iter::Zip<A::IntoIter, B::IntoIter>
where
    A: IntoIterator,
    B: IntoIterator,
    A::IntoIter: ExactSizeIterator,
    B::IntoIter: ExactSizeIterator,
{
    let (a, b) = (a.into_iter(), b.into_iter());
    assert_eq!(a.len(), b.len(), "{what}: lists of different lengths");
    a.zip(b)
}

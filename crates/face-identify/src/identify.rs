//! Identities from any engine's hits: one code path for every engine.

use search_core::{Engine, Error, Hit, Result};

use crate::identities::{Identities, Watchlist};

/// One person as an answer: who, how similar, and the gallery image that matched best.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// The person (see [`Identities::name`]).
    pub person: u32,
    /// The person's score: the best image's cosine similarity ([`Aggregation::Max`]) or the
    /// mean of the best two ([`Aggregation::MeanTop2`]).
    pub score: f32,
    /// The person's best-matching gallery row.
    pub row: u32,
}

/// How a person's score is made from the scores of their images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Aggregation {
    /// The best image's similarity (the usual rule, and the notebook's).
    #[default]
    Max,
    /// The mean of the best two images' similarities (the best one's alone when the person
    /// has one image; an approximate engine that finds only one of a person's images gives
    /// that one's): steadier against one look-alike image.
    MeanTop2,
}

/// The best-matching person with a similarity above `tau`, or `None`: "not enrolled".
///
/// Asks the engine for its best row: the best person under [`Aggregation::Max`].
pub fn identify(
    index: &dyn Engine,
    ids: &Identities,
    query: &[f32],
    tau: f32,
) -> Result<Option<Candidate>> {
    ids.check(index.len())?;
    search_core::check_tau(tau)?;
    let best = index.search(query, 1)?;
    Ok(best.first().filter(|h| h.score > tau).map(|h| Candidate {
        person: ids.person(h.id),
        score: h.score,
        row: h.id,
    }))
}

/// The `n` best people for `query`, best first (ties by row), one entry per person.
///
/// Asks the engine for enough rows to hold `n` people's images, and more while fewer than `n`
/// distinct people came back and the gallery has more. An approximate engine's misses show
/// up as lower or missing people, never as higher scores.
pub fn identify_top(
    index: &dyn Engine,
    ids: &Identities,
    query: &[f32],
    n: usize,
    aggregation: Aggregation,
) -> Result<Vec<Candidate>> {
    ids.check(index.len())?;
    search_core::check_k(n)?;
    let len = index.len();
    let per_person = match aggregation {
        Aggregation::Max => 1,
        Aggregation::MeanTop2 => 2,
    };
    let mut k = (n * per_person.max(ids.max_images().min(4))).clamp(1, len);
    loop {
        let hits = index.search(query, k)?;
        let people = aggregate(ids, &hits, aggregation);
        let everything = k >= len || hits.len() < k;
        // Under MeanTop2 a person's score is final once their second image was found (or
        // they have one): a person not yet seen, or seen once, scores at most the last hit.
        let settled = people.len() >= n
            && people[..n]
                .iter()
                .all(|(c, found)| *found >= per_person.min(ids.images_of(c.person)));
        if settled || everything {
            return Ok(people.into_iter().take(n).map(|(c, _)| c).collect());
        }
        k = (k * 4).min(len);
    }
}

/// Folds hits (best first) into people, best first, with how many of each person's images
/// were among the hits.
fn aggregate(ids: &Identities, hits: &[Hit], aggregation: Aggregation) -> Vec<(Candidate, usize)> {
    // Per person: the best hit, the second score, the images found.
    let mut seen: Vec<(Candidate, Option<f32>, usize)> = Vec::new();
    let mut slot = std::collections::HashMap::new();
    for h in hits {
        let person = ids.person(h.id);
        match slot.get(&person) {
            None => {
                slot.insert(person, seen.len());
                let best = Candidate {
                    person,
                    score: h.score,
                    row: h.id,
                };
                seen.push((best, None, 1));
            }
            Some(&i) => {
                let entry = &mut seen[i];
                entry.1.get_or_insert(h.score);
                entry.2 += 1;
            }
        }
    }
    let mut people: Vec<(Candidate, usize)> = seen
        .into_iter()
        .map(|(mut c, second, found)| {
            if let (Aggregation::MeanTop2, Some(s)) = (aggregation, second) {
                c.score = (c.score + s) / 2.0;
            }
            (c, found)
        })
        .collect();
    people.sort_by(|a, b| b.0.score.total_cmp(&a.0.score).then(a.0.row.cmp(&b.0.row)));
    people
}

/// The `k` rows on `watchlist` most similar to `query`, best first.
///
/// Asks the engine for more rows until `k` of them are on the list or the whole gallery was
/// asked for, so it is exact with an exact engine; an approximate engine finds what its walk
/// reaches (its recall on a small list can be lower than on the whole gallery).
pub fn search_within(
    index: &dyn Engine,
    watchlist: &Watchlist,
    query: &[f32],
    k: usize,
) -> Result<Vec<Hit>> {
    search_core::check_k(k)?;
    let len = index.len();
    if watchlist.gallery_rows() != len {
        return Err(Error::InvalidArgument(format!(
            "the watchlist was made for {} rows but the index holds {len}",
            watchlist.gallery_rows()
        )));
    }
    let listed = watchlist.len();
    if listed == 0 {
        return Ok(Vec::new());
    }
    // Expect a listed row among every len/listed rows asked for.
    let mut ask = (k.saturating_mul(len.div_ceil(listed)))
        .saturating_mul(2)
        .clamp(1, len);
    loop {
        let hits = index.search(query, ask)?;
        let everything = ask >= len || hits.len() < ask;
        let mut within: Vec<Hit> = hits
            .into_iter()
            .filter(|h| watchlist.contains(h.id))
            .collect();
        if within.len() >= k || everything {
            within.truncate(k);
            return Ok(within);
        }
        ask = ask.saturating_mul(4).min(len);
    }
}

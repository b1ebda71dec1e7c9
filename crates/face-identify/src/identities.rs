//! Which person each gallery row shows.

use std::collections::HashMap;

use search_core::{Error, Result};

/// Each gallery row's person: a person number per row, and each person's name.
///
/// ```
/// use face_identify::Identities;
/// let ids = Identities::from_labels(&["Eduardo_Eiras1", "Eduardo_Eiras2", "id007_3"]);
/// assert_eq!(ids.persons(), 2);
/// assert_eq!(ids.person(1), ids.person(0));
/// assert_eq!(ids.name(ids.person(2)), "id007");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identities {
    row_person: Vec<u32>,
    names: Vec<String>,
    by_name: HashMap<String, u32>,
    images: Vec<u32>,
}

impl Identities {
    /// One person name per row, in row order (a user's identity array).
    pub fn from_names<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let mut ids = Identities {
            row_person: Vec::new(),
            names: Vec::new(),
            by_name: HashMap::new(),
            images: Vec::new(),
        };
        for name in names {
            let name = name.as_ref();
            let next = ids.names.len() as u32;
            let person = *ids.by_name.entry(name.to_owned()).or_insert(next);
            if person == next {
                ids.names.push(name.to_owned());
                ids.images.push(0);
            }
            ids.images[person as usize] += 1;
            ids.row_person.push(person);
        }
        ids
    }

    /// One image label per row, each naming its person by the notebook's convention
    /// ([`embed_store::person_of`]: `Eduardo_Eiras2` → `Eduardo_Eiras`, `id042_3` → `id042`).
    pub fn from_labels<S: AsRef<str>>(labels: &[S]) -> Self {
        Self::from_names(labels.iter().map(|l| embed_store::person_of(l.as_ref())))
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.row_person.len()
    }

    /// Number of distinct people.
    pub fn persons(&self) -> usize {
        self.names.len()
    }

    /// The person of gallery row `row` (panics past the last row; [`Identities::check`] an
    /// index first).
    pub fn person(&self, row: u32) -> u32 {
        self.row_person[row as usize]
    }

    /// A person's name.
    pub fn name(&self, person: u32) -> &str {
        &self.names[person as usize]
    }

    /// The person called `name`, if enrolled.
    pub fn find(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// How many gallery images `person` has.
    pub fn images_of(&self, person: u32) -> usize {
        self.images[person as usize] as usize
    }

    /// The most images any one person has.
    pub fn max_images(&self) -> usize {
        self.images.iter().copied().max().unwrap_or(0) as usize
    }

    /// Checks that these identities describe an index of `rows` rows.
    pub fn check(&self, rows: usize) -> Result<()> {
        if self.rows() != rows {
            return Err(Error::InvalidArgument(format!(
                "the identities name {} rows but the index holds {rows}",
                self.rows()
            )));
        }
        Ok(())
    }

    /// A watchlist of the named people; a name not enrolled is an error.
    pub fn watchlist<S: AsRef<str>>(&self, names: &[S]) -> Result<Watchlist> {
        let mut people = vec![false; self.persons()];
        for name in names {
            let name = name.as_ref();
            let person = self.find(name).ok_or_else(|| {
                Error::InvalidArgument(format!("{name:?} is not enrolled in this gallery"))
            })?;
            people[person as usize] = true;
        }
        Ok(Watchlist {
            rows: self
                .row_person
                .iter()
                .map(|&p| people[p as usize])
                .collect(),
        })
    }
}

/// A subset of the gallery's rows that a search is restricted to: a watchlist, one tenant's
/// faces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watchlist {
    rows: Vec<bool>,
}

impl Watchlist {
    /// The rows listed (`rows` of a gallery of `len` rows); a row past the end is an error.
    pub fn of_rows(len: usize, rows: impl IntoIterator<Item = u32>) -> Result<Self> {
        let mut set = vec![false; len];
        for r in rows {
            *set.get_mut(r as usize).ok_or_else(|| {
                Error::InvalidArgument(format!("row {r} is past the gallery's {len} rows"))
            })? = true;
        }
        Ok(Watchlist { rows: set })
    }

    /// True when `row` is on the list.
    pub fn contains(&self, row: u32) -> bool {
        self.rows.get(row as usize).copied().unwrap_or(false)
    }

    /// Number of rows listed.
    pub fn len(&self) -> usize {
        self.rows.iter().filter(|&&r| r).count()
    }

    /// True when no row is listed.
    pub fn is_empty(&self) -> bool {
        !self.rows.contains(&true)
    }

    /// The size of the gallery it was made for.
    pub fn gallery_rows(&self) -> usize {
        self.rows.len()
    }
}

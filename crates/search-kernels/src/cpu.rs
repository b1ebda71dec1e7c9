//! The CPU's features, detected once, and the one dispatch every kernel family shares.
//!
//! A kernel family (say the f32 dot products) lists every variant compiled for the target,
//! each tagged with the [`Isa`] it needs, portable first and the most preferred last. The
//! [`Family`] keeps the variants this CPU runs ([`Family::available`]) and hands out the last
//! of them ([`Family::best`]); the tests walk `available()` and check every variant against
//! the portable one, so a variant that this CPU cannot run is the only one left untested
//! (see [`untested`]).

use std::sync::OnceLock;

/// An instruction set that a kernel variant needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain Rust for the target's baseline (SSE2 on x86-64, NEON on aarch64).
    Portable,
    /// x86-64 `popcnt`.
    Popcnt,
    /// x86-64 AVX2 and FMA.
    Avx2,
    /// x86-64 AVX-512 F and BW.
    Avx512,
    /// x86-64 AVX-512 F, BW and VNNI (`vpdpbusd`, `vpdpwssd`).
    Avx512Vnni,
    /// x86-64 AVX-512 F and VPOPCNTDQ (`vpopcntq`).
    Avx512Popcnt,
    /// aarch64 Advanced SIMD.
    Neon,
}

impl Isa {
    /// Every instruction set a variant may need, in the order of [`Isa::name`]'s table.
    pub const ALL: [Isa; 7] = [
        Isa::Portable,
        Isa::Popcnt,
        Isa::Avx2,
        Isa::Avx512,
        Isa::Avx512Vnni,
        Isa::Avx512Popcnt,
        Isa::Neon,
    ];

    /// Its name in reports and test failures: "portable", "popcnt", "avx2", "avx512",
    /// "avx512-vnni", "avx512-vpopcntdq" or "neon".
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Popcnt => "popcnt",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Avx512Popcnt => "avx512-vpopcntdq",
            Isa::Neon => "neon",
        }
    }

    /// True when this CPU runs code compiled for `self` (detected once, on first use).
    pub fn is_supported(self) -> bool {
        static DETECTED: OnceLock<[bool; Isa::ALL.len()]> = OnceLock::new();
        DETECTED.get_or_init(|| Isa::ALL.map(detect))[self as usize]
    }
}

/// The one table from instruction sets to the CPU features they need.
fn detect(isa: Isa) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        match isa {
            Isa::Portable => true,
            Isa::Popcnt => has!("popcnt"),
            Isa::Avx2 => has!("avx2") && has!("fma"),
            Isa::Avx512 => has!("avx512f") && has!("avx512bw"),
            Isa::Avx512Vnni => has!("avx512f") && has!("avx512bw") && has!("avx512vnni"),
            Isa::Avx512Popcnt => has!("avx512f") && has!("avx512vpopcntdq"),
            Isa::Neon => false,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        match isa {
            Isa::Portable => true,
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            _ => false,
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        isa == Isa::Portable
    }
}

/// The most capable general level this CPU runs, for reports: "avx512-vnni", "avx512",
/// "avx2", "neon" or "portable".
///
/// ```
/// let level = search_kernels::describe();
/// assert!(["avx512-vnni", "avx512", "avx2", "neon", "portable"].contains(&level));
/// ```
pub fn describe() -> &'static str {
    [Isa::Avx512Vnni, Isa::Avx512, Isa::Avx2, Isa::Neon]
        .into_iter()
        .find(|isa| isa.is_supported())
        .unwrap_or(Isa::Portable)
        .name()
}

/// One variant of a kernel family: the instruction set it needs and its kernels (a function
/// pointer, or a struct of them).
#[derive(Clone, Copy, Debug)]
pub struct Variant<K> {
    /// What the CPU must support to run it.
    pub isa: Isa,
    /// The kernels.
    pub kernels: K,
}

impl<K> Variant<K> {
    /// The name of its instruction set.
    pub fn name(&self) -> &'static str {
        self.isa.name()
    }
}

/// A family of kernels: one variant per instruction set, chosen once at run time.
pub struct Family<K: 'static> {
    name: &'static str,
    compiled: fn() -> Vec<Variant<K>>,
    runnable: OnceLock<Vec<Variant<K>>>,
}

impl<K: Copy> Family<K> {
    /// A family called `name` whose variants `compiled` lists: the portable one first, the
    /// most preferred last.
    pub const fn new(name: &'static str, compiled: fn() -> Vec<Variant<K>>) -> Self {
        Family {
            name,
            compiled,
            runnable: OnceLock::new(),
        }
    }

    /// The family's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Every variant compiled for this target, whether this CPU runs it or not.
    pub fn compiled(&self) -> Vec<Variant<K>> {
        (self.compiled)()
    }

    /// The variants this CPU runs: the portable one first, the chosen one last.
    pub fn available(&self) -> &[Variant<K>] {
        self.runnable.get_or_init(|| {
            let all: Vec<Variant<K>> = (self.compiled)();
            assert_eq!(all[0].isa, Isa::Portable, "{}: portable first", self.name);
            all.into_iter().filter(|v| v.isa.is_supported()).collect()
        })
    }

    /// The portable variant, which every other one agrees with.
    pub fn portable(&self) -> Variant<K> {
        self.available()[0]
    }

    /// The variant chosen for this CPU.
    #[inline]
    pub fn best(&self) -> Variant<K> {
        *self
            .available()
            .last()
            .expect("the portable variant is always available")
    }
}

/// A family seen without its kernels' type, for reports and for [`untested`].
pub trait AnyFamily: Sync {
    /// The family's name.
    fn name(&self) -> &'static str;
    /// The instruction sets of its compiled variants.
    fn compiled_isas(&self) -> Vec<Isa>;
    /// The instruction set of the chosen variant.
    fn best_isa(&self) -> Isa;
}

impl<K: Copy + Send + Sync> AnyFamily for Family<K> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn compiled_isas(&self) -> Vec<Isa> {
        self.compiled().iter().map(|v| v.isa).collect()
    }
    fn best_isa(&self) -> Isa {
        self.best().isa
    }
}

/// Every kernel family of the crate.
pub fn families() -> [&'static dyn AnyFamily; 6] {
    [
        &crate::f32::KERNELS,
        &crate::int8::BLOCK_DOT,
        &crate::int8::DOT_I8,
        &crate::planes::KERNELS,
        &crate::bits::SUMS,
        &crate::rows::KERNELS,
    ]
}

/// `(family, variant)` of every variant compiled for this target that this CPU cannot run,
/// so that its tests cannot check it here.
pub fn untested() -> Vec<(&'static str, Isa)> {
    families()
        .iter()
        .flat_map(|f| {
            f.compiled_isas()
                .into_iter()
                .filter(|isa| !isa.is_supported())
                .map(move |isa| (f.name(), isa))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portable_variant_is_always_there_and_the_best_is_runnable() {
        assert!(Isa::Portable.is_supported());
        for f in families() {
            let isas = f.compiled_isas();
            assert_eq!(isas[0], Isa::Portable, "{}", f.name());
            assert!(f.best_isa().is_supported(), "{}", f.name());
            // The chosen variant is the last runnable one.
            let last = isas.iter().rev().find(|i| i.is_supported()).copied();
            assert_eq!(Some(f.best_isa()), last, "{}", f.name());
        }
    }

    /// Variants this CPU cannot run are named, never skipped silently; a machine that must
    /// test a variant sets `SEARCH_KERNELS_REQUIRE` (e.g. `avx512-vnni,avx512-vpopcntdq`) and
    /// fails here when it lacks one.
    #[test]
    fn no_variant_is_skipped_silently() {
        for f in families() {
            let run: Vec<&str> = f
                .compiled_isas()
                .into_iter()
                .filter(|i| i.is_supported())
                .map(Isa::name)
                .collect();
            eprintln!("tested on this CPU: {} {run:?}", f.name());
        }
        for (family, isa) in untested() {
            eprintln!("not tested on this CPU: {family} {}", isa.name());
        }
        let required = std::env::var("SEARCH_KERNELS_REQUIRE").unwrap_or_default();
        for name in required.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let isa = Isa::ALL
                .into_iter()
                .find(|i| i.name() == name)
                .unwrap_or_else(|| panic!("SEARCH_KERNELS_REQUIRE names no ISA {name:?}"));
            assert!(
                isa.is_supported(),
                "{name} is required but this CPU lacks it"
            );
        }
    }

    #[test]
    fn the_level_names_a_supported_isa() {
        let level = describe();
        let isa = Isa::ALL.into_iter().find(|i| i.name() == level).unwrap();
        assert!(isa.is_supported());
    }
}

//! Kernels compiled twice: for the baseline target and, on x86-64, for AVX2 with FMA and BMI
//! (chosen at run time, once per call). The AVX2 build only widens what the compiler vectorises;
//! no fused multiply-add is written, so both builds give the same bits.

#[cfg(test)]
thread_local! {
    /// Tests set this to run the portable builds on an AVX2 machine.
    pub(super) static PORTABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Does the CPU have what the AVX2 builds need?
#[cfg(target_arch = "x86_64")]
#[inline]
pub(super) fn has_avx2() -> bool {
    #[cfg(test)]
    if PORTABLE.with(std::cell::Cell::get) {
        return false;
    }
    std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("bmi1")
        && std::is_x86_feature_detected!("bmi2")
        && std::is_x86_feature_detected!("lzcnt")
        && std::is_x86_feature_detected!("popcnt")
}

/// `fn name<const ..>(args) -> ret { body }`: the body is compiled as an always-inlined inner
/// function, called from an AVX2 build when [`has_avx2`] says so.
macro_rules! kernel {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident $(<$(const $c:ident: $ct:ty),+>)?
        ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        #[inline(never)]
        $vis fn $name $(<$(const $c: $ct),+>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body $(<$(const $c: $ct),+>)? ($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
                unsafe fn avx2 $(<$(const $c: $ct),+>)? ($($arg: $ty),*) $(-> $ret)? {
                    body $(::<$($c),+>)? ($($arg),*)
                }
                if $crate::intra::simd::has_avx2() {
                    // SAFETY: the CPU has every feature `avx2` is compiled for (checked just above).
                    return unsafe { avx2 $(::<$($c),+>)? ($($arg),*) };
                }
            }
            body $(::<$($c),+>)? ($($arg),*)
        }
    };
}

pub(super) use kernel;

//! Link the unwinder (libgcc_eh) statically into vm-rpctool, so it does not
//! load libgcc_s at run time. Rust's standard library otherwise links
//! libgcc_s dynamically, and under `hvsim exec` that costs every run a
//! library load, its trapped executable mapping and its constructor's dozen
//! CPUID traps (`__cpu_indicator_init`): about 14 ptrace stops out of 70,
//! which made vm-rpctool slower than vmware-rpctool (issue 3). Panics and
//! backtraces unwind as before (the same unwinder, linked in); `--as-needed`
//! (rustc's default) then drops the unused libgcc_s.
fn main() {
    println!("cargo:rustc-link-arg-bins=-static-libgcc");
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
}

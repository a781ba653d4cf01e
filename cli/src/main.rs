//! The `kthw` command: a thin layer over the library that parses arguments and prints results.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Rust's runtime ignores SIGPIPE before main, so a listing piped into `head` gets EPIPE and `println!`
    // panics ("failed printing to stdout: Broken pipe"). With the default disposition it ends quietly, as
    // other Unix tools do. Only for listings: libvirt writes its socket with write(2) (libvirt
    // src/rpc/virnetsocket.c, virNetSocketWriteWire), so under the default a libvirtd that goes away
    // mid-call would end `kthw up` by a silent signal instead of "Cannot write data: Broken pipe".
    if args.is_a_listing() {
        // SAFETY: SIG_DFL installs no handler, and no other thread exists yet to race with signal(2).
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    cli::init_logging(args.verbose);
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

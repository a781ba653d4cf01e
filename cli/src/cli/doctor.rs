use std::process::ExitCode;

use kthw::doctor::{self, Status};
use kthw::paths::Paths;

pub fn run() -> anyhow::Result<ExitCode> {
    let checks = doctor::run(&Paths::from_env());
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut missing_required = 0;
    for c in &checks {
        let (mark, detail) = match &c.status {
            Status::Ok(d) => ("ok     ", d.clone()),
            Status::Note(d) => ("note   ", d.clone()),
            Status::Missing { detail, fix } => {
                if c.required {
                    missing_required += 1;
                }
                (
                    if c.required { "MISSING" } else { "absent " },
                    format!("{detail}\n{:width$}           fix: {fix}", ""),
                )
            }
        };
        println!("{mark}  {:width$}  {detail}", c.name);
    }
    if missing_required > 0 {
        println!("\n{missing_required} required prerequisite(s) missing; see the fix lines above");
        Ok(ExitCode::FAILURE)
    } else {
        println!("\nthis host can build images and run clusters");
        Ok(ExitCode::SUCCESS)
    }
}

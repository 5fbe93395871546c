//! `enforcer class list|show`

use axum::http::Method;

use super::{
    Failure,
    client::{self, Output},
};
use crate::api::ClassView;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The running priority classes, highest first (with any class, the
    /// default one: processes in no listed cgroup).
    List {
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        client: client::Connection,
    },
    /// One class: its settings and its connections holding a slot, admitted
    /// and shed, summed over the destinations (JSON).
    Show {
        name: String,
        #[command(flatten)]
        client: client::Connection,
    },
}

pub fn execute(command: Command) -> Result<(), Failure> {
    match command {
        Command::List { output, client } => {
            let list: Vec<ClassView> = client.call(Method::GET, "/v1/classes", None)?;
            match output {
                Output::Json => client::print_json(&list),
                Output::Table if list.is_empty() => {
                    println!("no classes: every caller is default");
                }
                Output::Table => {
                    let mut table = client::table(&["CLASS", "PRIORITY", "SHARE", "CGROUPS"]);
                    for c in &list {
                        table.add_row([
                            c.settings.name.clone(),
                            c.settings.priority.clone(),
                            c.settings.share.to_string(),
                            cgroups_cell(c),
                        ]);
                    }
                    println!("{table}");
                }
            }
        }
        Command::Show { name, client } => {
            let class: ClassView = client.call(Method::GET, &client::class_target(&name), None)?;
            client::print_json(&class);
        }
    }
    Ok(())
}

/// The cgroups a class lists and its workload patterns, one per line; the default class also has every
/// process in no listed cgroup.
fn cgroups_cell(c: &ClassView) -> String {
    let mut lines = c.settings.cgroups.clone();
    if !c.selected.is_empty() {
        lines.push(client::workloads_lines(&c.selected));
    }
    if c.settings.priority == "default" {
        lines.push("(processes in no listed cgroup)".to_owned());
    }
    lines.join("\n")
}

//! Where a command's scores come from: a file on disk, or a done job's id whose scores are
//! fetched from the coordinator. One rule for `render`, `report` and `compare`, so that a
//! mistyped file name is never sent to the coordinator as a job id (which would read as
//! "unknown job" or "coordinator unreachable").

use std::path::{Path, PathBuf};

use attrib_proto::ScoresFile;

use crate::cli::Cli;
use crate::scores::fetch_scores;
use crate::{connect, Client};

/// A scores input as the user named it.
pub enum Input {
    File(PathBuf),
    Job(String),
}

/// A file when one exists at that path; a job id when it cannot be a path (no `/`, no
/// `.json`); otherwise a missing file, said as such.
pub fn classify(input: &str) -> anyhow::Result<Input> {
    let path = Path::new(input);
    if path.exists() {
        return Ok(Input::File(path.to_path_buf()));
    }
    if input.ends_with(".json") || input.contains('/') {
        anyhow::bail!("no scores file {input}");
    }
    Ok(Input::Job(input.to_string()))
}

/// Fetches jobs' scores over one connection, opened on the first job (files need none).
pub struct Jobs<'a> {
    cli: &'a Cli,
    client: Option<Client>,
}

impl<'a> Jobs<'a> {
    pub fn new(cli: &'a Cli) -> Self {
        Jobs { cli, client: None }
    }

    pub async fn scores(&mut self, job: &str) -> anyhow::Result<ScoresFile> {
        let client = match &mut self.client {
            Some(c) => c,
            None => self.client.insert(connect(self.cli).await?),
        };
        fetch_scores(client, job, None).await
    }
}

//! The client-facing `attrib.v1.Attrib` service: converts messages and calls the
//! coordinator; no job logic here.

use std::pin::Pin;
use std::sync::Arc;

use attrib_proto::v1;
use attrib_proto::v1::attrib_server::Attrib;
use attrib_proto::GraphShape;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::coordinator::Coordinator;

/// Default and largest scores per GetScores chunk (8 bytes each: 512 KiB and 2 MiB).
const DEFAULT_CHUNK: usize = 65_536;
const MAX_CHUNK: usize = 262_144;
/// Default and largest names per GetEdgeNames chunk (~25 bytes each: under 2 MiB, well
/// inside gRPC's 4 MiB default that other languages' clients keep).
const MAX_NAMES_CHUNK: usize = 65_536;

pub struct ClientService {
    pub coord: Arc<Coordinator>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn job_id(id: &str) -> Result<&str, Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("job_id is empty"));
    }
    Ok(id)
}

#[tonic::async_trait]
impl Attrib for ClientService {
    async fn submit_job(
        &self,
        req: Request<v1::SubmitJobRequest>,
    ) -> Result<Response<v1::SubmitJobResponse>, Status> {
        let (job_id, units_total) = self.coord.submit(req.into_inner()).await?;
        Ok(Response::new(v1::SubmitJobResponse {
            job_id,
            units_total,
        }))
    }

    async fn get_job(
        &self,
        req: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::GetJobResponse>, Status> {
        let job = self.coord.status(job_id(&req.get_ref().job_id)?).await?;
        Ok(Response::new(v1::GetJobResponse { job: Some(job) }))
    }

    async fn list_jobs(
        &self,
        _req: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        let jobs = self.coord.list().await?;
        Ok(Response::new(v1::ListJobsResponse { jobs }))
    }

    type WatchJobStream = BoxStream<v1::WatchJobResponse>;

    async fn watch_job(
        &self,
        req: Request<v1::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let id = job_id(&req.get_ref().job_id)?.to_string();
        let first = self.coord.status(&id).await?; // NOT_FOUND before the stream starts
        let coord = self.coord.clone();
        let mut changes = coord.subscribe();
        let mut leaving = coord.leaving();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut status = first;
            let mut last_sent = None;
            loop {
                if last_sent.as_ref() != Some(&status) {
                    let msg = v1::WatchJobResponse {
                        job: Some(status.clone()),
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return; // the client went away
                    }
                    last_sent = Some(status.clone());
                }
                if status.state().is_terminal() {
                    return;
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    // A watch must not hold the stopping server open.
                    _ = crate::coordinator::left(&mut leaving) => {
                        let why = "the coordinator is shutting down; watch again after its restart";
                        let _ = tx.send(Err(Status::unavailable(why))).await;
                        return;
                    }
                }
                status = match coord.status(&id).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn cancel_job(
        &self,
        req: Request<v1::CancelJobRequest>,
    ) -> Result<Response<v1::CancelJobResponse>, Status> {
        let job = self.coord.cancel(job_id(&req.get_ref().job_id)?).await?;
        Ok(Response::new(v1::CancelJobResponse { job: Some(job) }))
    }

    async fn delete_job(
        &self,
        req: Request<v1::DeleteJobRequest>,
    ) -> Result<Response<v1::DeleteJobResponse>, Status> {
        let database_bytes = self.coord.delete(job_id(&req.get_ref().job_id)?).await?;
        Ok(Response::new(v1::DeleteJobResponse { database_bytes }))
    }

    type GetScoresStream = BoxStream<v1::GetScoresResponse>;

    async fn get_scores(
        &self,
        req: Request<v1::GetScoresRequest>,
    ) -> Result<Response<Self::GetScoresStream>, Status> {
        let r = req.into_inner();
        let stored = self.coord.scores(job_id(&r.job_id)?, r.dataset).await?;
        let chunk = chunk_len(r.chunk_size, DEFAULT_CHUNK, MAX_CHUNK);
        let header = v1::GetScoresResponse {
            part: Some(v1::get_scores_response::Part::Header(v1::ScoresHeader {
                job_id: r.job_id.clone(),
                graph: Some((&stored.graph).into()),
                n_edges: stored.scores.len() as u64,
                metadata_json: serde_json::to_string(&stored.metadata)
                    .map_err(|e| Status::internal(e.to_string()))?,
            })),
        };
        let chunks = stored
            .scores
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| v1::GetScoresResponse {
                part: Some(v1::get_scores_response::Part::Chunk(v1::ScoresChunk {
                    offset: (i * chunk) as u64,
                    scores: c.to_vec(),
                })),
            })
            .collect::<Vec<_>>();
        let all = std::iter::once(header).chain(chunks).map(Ok);
        Ok(Response::new(Box::pin(tokio_stream::iter(all))))
    }

    type GetEdgeNamesStream = BoxStream<v1::GetEdgeNamesResponse>;

    async fn get_edge_names(
        &self,
        req: Request<v1::GetEdgeNamesRequest>,
    ) -> Result<Response<Self::GetEdgeNamesStream>, Status> {
        let r = req.get_ref();
        // The graph of the stored scores: the names are those of the vector GetScores sends,
        // and the job's errors (unknown, not done, faithfulness) are GetScores' too.
        let stored = self.coord.scores(job_id(&r.job_id)?, None).await?;
        let chunk = chunk_len(r.chunk_size, MAX_NAMES_CHUNK, MAX_NAMES_CHUNK);
        let all = edge_name_chunks(&stored.graph, chunk).into_iter().map(Ok);
        Ok(Response::new(Box::pin(tokio_stream::iter(all))))
    }

    async fn list_workers(
        &self,
        _req: Request<v1::ListWorkersRequest>,
    ) -> Result<Response<v1::ListWorkersResponse>, Status> {
        Ok(Response::new(v1::ListWorkersResponse {
            workers: self.coord.workers(),
        }))
    }

    async fn get_faithfulness(
        &self,
        req: Request<v1::GetFaithfulnessRequest>,
    ) -> Result<Response<v1::GetFaithfulnessResponse>, Status> {
        let (job_id, curve_json) = self.coord.curve(job_id(&req.get_ref().job_id)?).await?;
        Ok(Response::new(v1::GetFaithfulnessResponse {
            job_id,
            curve_json,
        }))
    }
}

/// Items per streamed message: the request's size (0: `default`), at most `max`.
fn chunk_len(asked: u32, default: usize, max: usize) -> usize {
    match asked as usize {
        0 => default,
        n => n.min(max),
    }
}

/// The names of `graph`'s edges in flat (score vector) order, `chunk` (at least 1) per message; one empty
/// message for a graph without edges, so a caller always learns `n_edges`.
fn edge_name_chunks(graph: &GraphShape, chunk: usize) -> Vec<v1::GetEdgeNamesResponse> {
    let names = graph.named_edges();
    let n_edges = names.len() as u64;
    if names.is_empty() {
        return vec![v1::GetEdgeNamesResponse {
            offset: 0,
            n_edges,
            edges: vec![],
        }];
    }
    names
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| v1::GetEdgeNamesResponse {
            offset: (i * chunk) as u64,
            n_edges,
            edges: c
                .iter()
                .map(|e| v1::EdgeName {
                    src: e.src.clone(),
                    dest: e.dest.clone(),
                    seq: e.seq.map(|s| s as u32),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use attrib_proto::{
        AttributionSettings, DataSettings, ModelRecord, ScoresFile, ScoresMetadata,
    };

    /// The names of every chunk, joined, are the names a scores file gives the same vector.
    #[test]
    fn edge_names_tile_the_score_vector_in_order() {
        for graph in [
            GraphShape {
                n_layers: 2,
                n_heads: 3,
                separate_qkv: true,
                seq_len: Some(4),
            },
            GraphShape {
                n_layers: 1,
                n_heads: 2,
                separate_qkv: false,
                seq_len: None,
            },
        ] {
            let n = graph.n_edges();
            let chunks = edge_name_chunks(&graph, 7);
            assert_eq!(chunks.len(), n.div_ceil(7));
            let mut joined = Vec::new();
            for c in &chunks {
                assert_eq!(c.offset as usize, joined.len());
                assert_eq!(c.n_edges as usize, n);
                assert!(!c.edges.is_empty() && c.edges.len() <= 7);
                joined.extend(c.edges.iter().cloned());
            }
            assert_eq!(joined.len(), n);
            let scores: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let meta = ScoresMetadata {
                n_edges: n,
                clean_logit_diff: 0.0,
                settings: AttributionSettings::default(),
                data: DataSettings::new(&v1::DataOptions::default(), vec![], 4, None),
                model: ModelRecord {
                    path: "m".into(),
                    n_layers: graph.n_layers,
                    n_heads: graph.n_heads,
                    d_model: 8,
                },
                device_class: String::new(),
            };
            let file = ScoresFile::from_parts(meta, &graph, &scores);
            for (i, (name, edge)) in joined.iter().zip(&file.edges).enumerate() {
                assert_eq!(edge.score, i as f64);
                assert_eq!(
                    (name.src.as_str(), name.dest.as_str(), name.seq),
                    (
                        edge.src.as_str(),
                        edge.dest.as_str(),
                        edge.seq.map(|s| s as u32)
                    ),
                    "edge {i}"
                );
            }
            assert_eq!(joined[0].src, "Resid Start");
            assert_eq!(joined[n - 1].dest, "Resid End");
            assert_eq!(joined[0].seq, graph.seq_len.map(|_| 0));
        }
    }
}

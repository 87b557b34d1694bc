//! Puts the coordinator on the network: both services, gRPC health and reflection, the token
//! check, message size limits and HTTP/2 keepalive on one listener. `start` binds (port 0 works) and returns
//! a handle, so tests run a real server on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use attrib_proto::v1::attrib_server::AttribServer;
use attrib_proto::v1::worker_gateway_server::WorkerGatewayServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

use crate::client_service::ClientService;
use crate::config::CoordinatorConfig;
use crate::coordinator::Coordinator;
use crate::db_lock::DbLock;
use crate::worker_service::WorkerService;
use crate::Result;

/// gRPC server reflection (v1 and the v1alpha that older tools ask for) over attrib.v1 and
/// grpc.health.v1, so grpcurl, grpcui and Postman need no .proto file.
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(attrib_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// A coordinator serving on `addr` until `stop` is called.
pub struct RunningCoordinator {
    pub addr: SocketAddr,
    pub coord: Arc<Coordinator>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
    /// The database is this coordinator's until it is dropped.
    db_lock: DbLock,
}

impl RunningCoordinator {
    /// `http://host:port`, or `https://` when the listener has TLS.
    pub fn url(&self) -> String {
        let scheme = if self.coord.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting calls, waits for the server to end, and commits what was folded.
    pub async fn stop(self) {
        self.shutdown(Duration::MAX).await;
    }

    /// Stops: no new calls or sessions, worker sessions and watches end (workers dial again
    /// and find the restart), calls in flight get up to `grace` to finish, then what was
    /// folded is committed. Returns whether everything finished within `grace`.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        self.coord.leave();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let finished = tokio::time::timeout(grace, &mut self.task).await.is_ok();
        if !finished {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "calls still open after the grace: cut off"
            );
            self.task.abort();
        }
        if let Err(e) = self.coord.close().await {
            tracing::error!(error = %e, "last group commit failed");
        }
        finished
    }

    /// Waits until the server ends by itself (an accept error); do not `stop` it afterwards.
    pub async fn wait(&mut self) -> std::result::Result<(), String> {
        match (&mut self.task).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Opens the coordinator (resuming stored jobs) and serves it.
pub async fn start(config: CoordinatorConfig) -> Result<RunningCoordinator> {
    // Before the port: a second coordinator on this database is refused for that, whatever
    // its address.
    let db_lock = DbLock::acquire(&config.db)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| crate::Error::Bind {
            addr: config.listen,
            source: e,
        })?;
    let addr = listener.local_addr().map_err(|e| crate::Error::Bind {
        addr: config.listen,
        source: e,
    })?;
    let coord = Coordinator::open(config.clone()).await?;
    // Workers need the worker token (a client token does not open a session once
    // `--worker-token` is set) and, with a worker CA, a verified client certificate.
    let (client_auth, worker_auth) = crate::auth_gate::gates(
        config.token.as_deref(),
        config.worker_token.as_deref().or(config.token.as_deref()),
        config
            .tls
            .as_ref()
            .is_some_and(|t| t.worker_ca_file.is_some()),
    );
    if config.worker_token.is_none() && config.token.is_some() {
        tracing::warn!("workers use the client token: anyone who may submit jobs may also serve results; set --worker-token to separate them");
    }
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AttribServer<ClientService>>()
        .await;
    health_reporter
        .set_serving::<WorkerGatewayServer<WorkerService>>()
        .await;
    let client = AttribServer::new(ClientService {
        coord: coord.clone(),
    })
    .max_decoding_message_size(config.max_request_bytes);
    let workers = WorkerGatewayServer::new(WorkerService {
        coord: coord.clone(),
    })
    .max_decoding_message_size(config.max_result_bytes);
    // The descriptor sets are compiled in: an error here is a build defect, not input.
    let reflection_v1 = reflection_builder()
        .build_v1()
        .expect("the compiled-in descriptor sets are valid");
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .expect("the compiled-in descriptor sets are valid");
    let (tx, rx) = oneshot::channel::<()>();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder
            .tls_config(tls.server_config()?)
            .map_err(|e| crate::Error::Tls(e.to_string()))?;
    }
    let router = builder
        // Unit results are MBs and assignments small: no Nagle delay on the small ones, and
        // HTTP/2 windows that let a result flow without waiting for window updates.
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(attrib_proto::HTTP2_STREAM_WINDOW))
        .initial_connection_window_size(Some(attrib_proto::HTTP2_CONNECTION_WINDOW))
        .http2_keepalive_interval(Some(config.keepalive / 2))
        .http2_keepalive_timeout(Some(config.keepalive))
        // Health stays open without the token: load balancers and probes cannot send one,
        // and it reveals nothing but "serving". Reflection too: it reveals only the schema,
        // which is public (proto/attrib/v1/attrib.proto), and tools ask for it before they
        // know which metadata to send.
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(client, client_auth))
        .add_service(InterceptedService::new(workers, worker_auth));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = rx.await;
    }));
    tracing::info!(%addr, model = %coord.model.dir.display(), "coordinator listening");
    let running = RunningCoordinator {
        addr,
        coord,
        shutdown: Some(tx),
        task,
        db_lock,
    };
    // Only the refusal message of a second coordinator needs it: not worth failing for.
    if let Err(e) = running.db_lock.record_address(&running.url()) {
        tracing::warn!(error = %e, "cannot note the address in the database lock");
    }
    Ok(running)
}

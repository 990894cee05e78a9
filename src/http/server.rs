//! The service's HTTP server: the API app on actix-http, each connection behind a
//! [`HeadGuard`] so that a refused request head is answered in JSON like every other error.
//!
//! actix-web's `HttpServer` cannot wrap connections, so this assembles the same parts
//! (actix-server's listener and workers, actix-http's HTTP/1.1 service, actix-web's app)
//! with the guard between the socket and actix-http.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use actix_http::{HttpService, KeepAlive};
use actix_server::Server;
use actix_service::{ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::{App, web};
use socket2::{Domain, Protocol, Socket, Type};

use super::head_guard::HeadGuard;
use super::{ApiState, not_found};

/// How the server treats connections.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How long a request head (and, through the API's middleware, a body) may take to arrive.
    pub request_timeout: Duration,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// How long requests in flight get to finish once a graceful stop begins.
    pub drain: Duration,
    /// Connections open at once, at most (past it, new ones wait in the listen backlog).
    pub max_connections: usize,
}

/// A bound, not yet running, server.
pub struct Bound {
    server: actix_server::ServerBuilder,
    addrs: Vec<SocketAddr>,
}

impl Bound {
    /// The addresses listened on (with the port chosen when the bind asked for port 0).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Starts accepting connections.
    pub fn run(self) -> Server {
        self.server.run()
    }
}

/// Binds `addr` and prepares the API over `state`. Signals are left to the caller.
pub fn bind(addr: SocketAddr, state: ApiState, options: &ServerOptions) -> io::Result<Bound> {
    let listener = listen(addr)?;
    let addrs = vec![listener.local_addr()?];
    let mut builder = Server::build()
        .disable_signals()
        .shutdown_timeout(options.drain.as_secs().max(1));
    let workers = if options.workers > 0 {
        options.workers
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    builder = builder
        .workers(workers)
        .max_concurrent_connections(options.max_connections.div_ceil(workers).max(1));
    let stopping = builder.graceful_shutdown_signal();
    let head_timeout = options.request_timeout;
    let server = builder.listen("stagehand-http", listener, move || {
        let stopping = stopping.clone();
        let app = App::new()
            .service(super::scope("", state.clone()))
            .default_service(web::to(not_found));
        let http = HttpService::build()
            .keep_alive(KeepAlive::Timeout(Duration::from_secs(5)))
            // The guard times request heads, and answers in JSON when one is late.
            .client_request_timeout(Duration::ZERO)
            .client_disconnect_timeout(Duration::from_secs(1))
            .h1_allow_half_closed(true)
            .graceful_shutdown_signal(move || {
                let stopping = stopping.clone();
                async move { stopping.notified().await }
            })
            .h1(map_config(app, |_| AppConfig::default()));
        fn_service(move |io: actix_rt::net::TcpStream| {
            let peer = io.peer_addr().ok();
            let _ = io.set_nodelay(true);
            std::future::ready(Ok((HeadGuard::new(io, head_timeout), peer)))
        })
        .and_then(http)
    })?;
    Ok(Bound { server, addrs })
}

/// A listening socket with a backlog fit for bursts of connections.
fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

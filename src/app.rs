//! The running bridge: [`App::start`] turns a compiled [`Plan`] into backend clients, the
//! store, profiles, services and the three front doors; [`App::handle`] only routes a request
//! by its path to the door that owns it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, StatusCode};

use crate::backend::Backend;
use crate::clock::Clock;
use crate::config::Plan;
use crate::front::soap::SoapDoor;
use crate::front::winstrom::WinstromDoor;
use crate::front::xmlrpc::XmlRpcDoor;
use crate::pipeline::Pipeline;
use crate::profile::Profile;
use crate::server::{Body, Resp, ServeOptions, text_response};
use crate::service::Service;
use crate::stock::StockSync;
use crate::store::Store;

/// Why the bridge could not start from a (valid) plan: something outside it is not there.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct StartError {
    pub what: String,
    pub reason: String,
}

#[derive(Debug)]
pub struct App {
    pipeline: Pipeline,
    soap: SoapDoor,
    xmlrpc: Option<XmlRpcDoor>,
    winstrom: Option<WinstromDoor>,
    /// Sorted by path.
    services: Vec<Arc<Service>>,
    stock: Option<Arc<StockSync>>,
    store: Option<Arc<Store>>,
    public_url: String,
    serve: ServeOptions,
}

impl App {
    /// Starts what a plan describes on the system clock: see [`App::start_with_clock`].
    pub async fn start(plan: Plan) -> Result<App, StartError> {
        App::start_with_clock(plan, Clock::system()).await
    }

    /// Starts what a plan describes, going by `clock` (tests move an adjustable clock forward
    /// instead of sleeping): opens the store (creating or migrating it), makes a client for
    /// every backend, binds every operation to its backend. Nothing listens yet and no worker
    /// runs: see [`crate::server::run`].
    pub async fn start_with_clock(plan: Plan, clock: Clock) -> Result<App, StartError> {
        let store = match &plan.store {
            Some(s) => {
                let store = Store::open(&s.url, &s.schema)
                    .await
                    .map_err(|e| StartError {
                        what: "store.url".into(),
                        reason: e.to_string(),
                    })?;
                tracing::info!(kind = store.kind(), "store opened");
                Some(Arc::new(store))
            }
            None => None,
        };
        let backends: BTreeMap<String, Arc<Backend>> = plan
            .backends
            .iter()
            .map(|(name, b)| (name.clone(), Arc::new(Backend::new(b, clock.clone()))))
            .collect();
        let backend = |name: &str| backends[name].clone();
        let profiles: BTreeMap<String, Arc<Profile>> = plan
            .profiles
            .iter()
            .map(|(name, p)| (name.clone(), Arc::new(Profile::new(p, store.as_ref()))))
            .collect();
        let stock = match (&plan.stock, &store) {
            (Some(s), Some(st)) => Some(Arc::new(StockSync::new(
                s,
                st.clone(),
                backend(&s.backend),
                clock.clone(),
            ))),
            _ => None,
        };
        let services: Vec<Arc<Service>> = plan
            .services
            .into_iter()
            .map(|s| {
                let profile = s.profile.as_ref().map(|p| profiles[p].clone());
                Arc::new(Service::new(s, profile, backend))
            })
            .collect();
        let winstrom = plan
            .winstrom
            .as_ref()
            .map(|w| WinstromDoor::new(w, |p| profiles[p].clone(), backend, clock.clone()));
        let server = &plan.server;
        Ok(App {
            pipeline: Pipeline::new(server.limits, clock, stock.clone()),
            soap: SoapDoor::new(&services),
            xmlrpc: plan.xmlrpc.as_ref().map(|x| XmlRpcDoor::new(x, &services)),
            winstrom,
            services,
            stock,
            store,
            public_url: server.public_url.clone(),
            serve: ServeOptions {
                header_timeout: server.header_timeout,
                grace: server.grace,
                max_connections: server.max_connections,
                drain: crate::server::Drain {
                    max_bytes: crate::config::defaults::DRAIN_MAX_BYTES,
                    max_time: server.limits.body_timeout,
                },
            },
        })
    }

    /// The store, when the plan has one.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    pub fn serve_options(&self) -> ServeOptions {
        self.serve
    }

    /// Starts the background work (stock delivery workers) until `shutdown` turns true; the
    /// handle completes when the workers have finished and released their claims.
    pub fn start_background(
        &self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.stock.clone().map(|s| tokio::spawn(s.run(shutdown)))
    }

    /// Every service, operation and the backend call it maps to (for `soapbridge check`).
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self.services.iter().flat_map(|s| s.describe()).collect();
        if let Some(x) = &self.xmlrpc {
            out.push(format!(
                "XML-RPC {} (every operation above as <service>.<operation>)",
                x.path
            ));
        }
        if let Some(w) = &self.winstrom {
            out.extend(w.describe());
        }
        if let Some(s) = &self.stock {
            out.extend(s.describe());
        }
        out
    }

    /// Answers one HTTP request: routes it by path to the door that owns it. `/` lists the
    /// services and `/healthz` answers `ok`; any other path is a SOAP fault (404).
    pub async fn handle(&self, req: Request<Body>) -> Resp {
        let started = Instant::now();
        let path = req.uri().path().trim_end_matches('/');
        let p = &self.pipeline;
        if let Some(svc) = self.soap.service(path) {
            return crate::front::soap::handle(p, svc, req, started).await;
        }
        if let Some(x) = self.xmlrpc.as_ref().filter(|x| x.path == path) {
            return crate::front::xmlrpc::handle(x, p, req, started).await;
        }
        if let Some(w) = self.winstrom.as_ref().filter(|w| w.owns(path)) {
            return crate::front::winstrom::handle(w, p, req, started).await;
        }
        match (req.method(), path) {
            (&Method::GET, "") => self.index(),
            (&Method::GET, "/healthz") => {
                text_response(StatusCode::OK, "text/plain; charset=utf-8", "ok\n")
            }
            _ => crate::front::soap::no_such_service(&req),
        }
    }

    fn index(&self) -> Resp {
        let mut s = String::from("soapbridge\n\n");
        for svc in &self.services {
            s.push_str(&format!("{}  {}?wsdl\n", svc.name, svc.endpoint));
        }
        if let Some(x) = &self.xmlrpc {
            s.push_str(&format!(
                "\nXML-RPC  {}{}  (system.listMethods)\n",
                self.public_url, x.path
            ));
        }
        text_response(StatusCode::OK, "text/plain; charset=utf-8", s)
    }
}

//! mtls-guard: judges the certificate an upstream presented in the gateway's mutual-TLS
//! handshake, per route, and makes the result visible.
//!
//! `cert`, `dn`, `config` and `policy` are pure and host-independent; `filter` wires them
//! to a [`host::Host`]; `host` is the only module that talks to the proxy-wasm ABI.

pub mod cert;
pub mod config;
pub mod dn;
pub mod filter;
pub mod host;
pub mod metrics;
pub mod policy;
pub mod timefmt;

#[cfg(target_os = "wasi")]
mod entry {
    use std::cell::RefCell;
    use std::rc::Rc;

    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel};

    use crate::filter::{self, Flow, Instance, StreamState, Worker};
    use crate::host::ProxyWasm;

    thread_local! {
        /// Per-VM state shared by every filter instance of this worker.
        static WORKER: RefCell<Worker> = RefCell::new(Worker::default());
    }

    proxy_wasm::main! {{
        crate::host::install_panic_hook();
        proxy_wasm::set_log_level(LogLevel::Trace);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { instance: None }) });
    }}

    struct Root {
        instance: Option<Rc<RefCell<Instance>>>,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            match filter::configure(&ProxyWasm) {
                Some(i) => {
                    self.instance = Some(Rc::new(RefCell::new(i)));
                    true
                }
                None => false,
            }
        }

        fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Stream {
                instance: self.instance.clone(),
                state: StreamState::default(),
            }))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Stream {
        instance: Option<Rc<RefCell<Instance>>>,
        state: StreamState,
    }

    impl Stream {
        fn run(
            &mut self,
            phase: impl FnOnce(&mut Instance, &mut Worker, &mut StreamState) -> Flow,
        ) -> Action {
            let Some(instance) = &self.instance else {
                return Action::Continue;
            };
            let Ok(mut instance) = instance.try_borrow_mut() else {
                return Action::Continue;
            };
            let state = &mut self.state;
            let flow = WORKER.with(|w| match w.try_borrow_mut() {
                Ok(mut worker) => phase(&mut instance, &mut worker, state),
                Err(_) => Flow::Continue,
            });
            match flow {
                Flow::Continue => Action::Continue,
                Flow::Pause => Action::Pause,
            }
        }
    }

    impl Context for Stream {}

    impl HttpContext for Stream {
        fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
            self.run(|i, w, s| i.on_request_headers(&ProxyWasm, w, s))
        }

        fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
            self.run(|i, w, s| i.on_response_headers(&ProxyWasm, w, s).0)
        }
    }
}

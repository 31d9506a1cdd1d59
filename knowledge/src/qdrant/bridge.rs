//! A small runtime of the backend's own, so that the [`crate::KnowledgeBase`] methods that are
//! blocking by contract (callers run them on `spawn_blocking`, tests call them from plain
//! threads) can wait for gRPC calls without caring which runtime, if any, they are called from.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::error::KnowledgeError;

/// One thread driving a current-thread tokio runtime; the client's connections live there.
#[derive(Debug)]
pub(super) struct Bridge {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl Bridge {
    /// Starts the thread.
    ///
    /// # Errors
    /// When the runtime or the thread cannot be created.
    pub(super) fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sapa-qdrant".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
        })
    }

    /// Runs `future` on the bridge and blocks the calling thread until it ends.
    pub(super) fn block<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, KnowledgeError>> + Send + 'static,
    ) -> Result<T, KnowledgeError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// Runs `future` on the bridge and awaits it from any runtime.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, KnowledgeError>> + Send + 'static,
    ) -> Result<T, KnowledgeError> {
        match self.handle.spawn(future).await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(stopped()),
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn stopped() -> KnowledgeError {
    KnowledgeError::Backend {
        backend: "qdrant",
        message: "the client's runtime stopped".to_owned(),
    }
}

//! The gateway's health for each service follows its backends: a service is SERVING while at
//! least one of its instances answers its health check with SERVING. The same checks steer
//! round-robin away from instances that are down.

use std::{sync::Arc, sync::atomic::Ordering, time::Duration};

use todo_common::Shutdown;
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_check_response, health_client::HealthClient},
    server::HealthReporter,
};

use crate::{
    connection::Client,
    forward::{Backend, Instance},
};

async fn check(instance: &Instance, service: &str, timeout: Duration) -> bool {
    let mut client = HealthClient::new(Client(instance.connection()));
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    match tokio::time::timeout(timeout, client.check(request)).await {
        Ok(Ok(response)) => {
            response.into_inner().status() == health_check_response::ServingStatus::Serving
        }
        _ => false,
    }
}

/// Checks every instance of `backends` every `interval` until shutdown.
pub async fn watch_backends(
    backends: Vec<Arc<Backend>>,
    health: HealthReporter,
    interval: Duration,
    shutdown: Shutdown,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.wait() => return,
        }
        for backend in &backends {
            let mut any = false;
            for instance in &backend.instances {
                let up = check(
                    instance,
                    backend.service,
                    interval.max(Duration::from_millis(500)),
                )
                .await;
                let was = instance.healthy.swap(up, Ordering::Relaxed);
                if was != up {
                    tracing::info!(
                        backend = instance.url,
                        service = backend.service,
                        up,
                        "backend health changed"
                    );
                }
                any |= up;
            }
            if shutdown.is_triggered() {
                return;
            }
            let status = if any {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status(backend.service, status).await;
        }
    }
}

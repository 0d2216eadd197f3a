//! The code prost and tonic generate from `proto/`, in modules named after the
//! packages (the generated code refers across them by relative paths).

#![allow(
    dead_code,
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]

pub mod event_store {
    pub mod client {
        tonic::include_proto!("event_store.client");

        pub mod streams {
            tonic::include_proto!("event_store.client.streams");
        }

        pub mod server_features {
            tonic::include_proto!("event_store.client.server_features");
        }

        pub mod persistent_subscriptions {
            tonic::include_proto!("event_store.client.persistent_subscriptions");
        }
    }
}

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

mod auth;
mod service;

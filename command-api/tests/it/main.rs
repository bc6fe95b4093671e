mod service;

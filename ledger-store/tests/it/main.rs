mod dynamodb;
mod sqlite;
mod views;

mod dynamodb;
mod sqlite;

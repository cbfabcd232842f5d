# Sourced by .ci/run (and usable by hand: `. .ci/postgres.sh && start_postgres`): a PostgreSQL
# server on 127.0.0.1 for tests/test_search_storage.py, as a cluster of machines would use it.
# Installs Debian's `postgresql` if needed, starts its cluster, creates the role and database
# `recipes` (password `recipes`, CREATEDB: the test makes a database per run) and exports
#   RECIPES_TEST_POSTGRES_URL=postgresql+psycopg://recipes@127.0.0.1:<port>/recipes
#   PGPASSWORD=recipes            (the URL holds no password: the driver reads this variable)
# Returns non-zero, having said why, when any step fails; the test then skips and says so.

start_postgres() {
  if ! command -v pg_lsclusters >/dev/null 2>&1; then
    echo "Installing PostgreSQL (Debian's postgresql package)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
      || { echo "postgresql could not be installed"; return 1; }
  fi
  local version="" cluster="" port="" status=""
  read -r version cluster port status _ < <(pg_lsclusters -h | head -n 1) || true
  if [ -z "${version:-}" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    cluster=main
    pg_createcluster "$version" "$cluster" >/dev/null || { echo "pg_createcluster $version failed"; return 1; }
    read -r version cluster port status _ < <(pg_lsclusters -h | head -n 1) || return 1
  fi
  if [ "$status" != "online" ]; then
    pg_ctlcluster "$version" "$cluster" start || { echo "the PostgreSQL $version cluster would not start"; return 1; }
  fi
  local psql="cd / && psql -p $port -qAt -v ON_ERROR_STOP=1"
  su postgres -c "$psql" >/dev/null <<'SQL' || { echo "could not create the role recipes"; return 1; }
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'recipes') THEN
    CREATE ROLE recipes LOGIN CREATEDB PASSWORD 'recipes';
  END IF;
END $$;
SQL
  local exists
  exists=$(echo "SELECT 1 FROM pg_database WHERE datname = 'recipes'" | su postgres -c "$psql") || exists=""
  if [ "$exists" != "1" ]; then
    su postgres -c "cd / && createdb -p $port -O recipes recipes" || { echo "could not create the database recipes"; return 1; }
  fi
  export RECIPES_TEST_POSTGRES_URL="postgresql+psycopg://recipes@127.0.0.1:${port}/recipes"
  export PGPASSWORD=recipes
  echo "PostgreSQL $version on 127.0.0.1:$port: $RECIPES_TEST_POSTGRES_URL"
}

#!/usr/bin/env bash
# The local stack of real servers that shirath's tests and demo use:
#   PostgreSQL 15, one single-node ClickHouse 18.16 (Debian's), one single-node
#   ClickHouse 26.7 (chDB's engine from npm, served by internal/stack/chdbserver),
#   one ZooKeeper and a ClickHouse 18.16 cluster of 4 nodes (2 shards x 2
#   replicas) named shirath_test.
# Everything lives under $STACK_DIR (default: .stack/ in the repository),
# listens on 127.0.0.1 only and is stopped by the pids recorded at start.
#
#   stack.sh up              install what is missing, start what is not running, wait
#   stack.sh down            stop exactly the processes started by `up`
#   stack.sh status          show which servers answer
#   stack.sh stop-node NAME  stop one cluster node (n1..n4), for failure tests
#   stack.sh start-node NAME start it again and wait until it answers
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK_DIR="${STACK_DIR:-$ROOT/.stack}"
CLUSTER_NAME="${SHIRATH_STACK_CLUSTER:-shirath_test}"

PG_PORT="${SHIRATH_STACK_PG_PORT:-15432}"
SINGLE_TCP="${SHIRATH_STACK_CH_PORT:-19000}"
SINGLE_HTTP=18123
MODERN_TCP="${SHIRATH_STACK_CH_MODERN_PORT:-19300}"
MODERN_HTTP=18300
# The modern engine: chDB's build of ClickHouse, the only current ClickHouse
# these machines can install (see ../shared/CLICKHOUSE_NOTES.md).
CHDB_PACKAGE="@chdb/lib-linux-x64-gnu@26.7.3-stable.1"
ZK_PORT="${SHIRATH_STACK_ZK_PORT:-12181}"
NODES=(n1 n2 n3 n4)
declare -A NODE_TCP=([n1]=19101 [n2]=19102 [n3]=19103 [n4]=19104)
declare -A NODE_HTTP=([n1]=18201 [n2]=18202 [n3]=18203 [n4]=18204)
declare -A NODE_ISH=([n1]=19201 [n2]=19202 [n3]=19203 [n4]=19204)
declare -A NODE_SHARD=([n1]=1 [n2]=1 [n3]=2 [n4]=2)
declare -A NODE_REPLICA=([n1]=r1 [n2]=r2 [n3]=r1 [n4]=r2)
# A broken ON CLUSTER call must fail in seconds, not after the default 180 s.
DDL_TIMEOUT="${SHIRATH_STACK_DDL_TIMEOUT:-20}"

PG_BIN=/usr/lib/postgresql/15/bin
ZK_HOME=/usr/share/zookeeper

log() { echo "stack: $*" >&2; }
die() { echo "stack: error: $*" >&2; exit 1; }

# spawn PIDFILE LOG CMD...: start a long-lived server in its own session, so
# that it outlives the shell job that started it, and record its real pid.
# setsid forks when the caller leads a process group (a shell with job
# control), so $! would be the wrong pid: the process writes its own.
spawn() {
	local pidfile=$1 logfile=$2
	shift 2
	rm -f "$pidfile"
	setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >"$logfile" 2>&1 </dev/null &
	local i
	for i in $(seq 1 50); do
		[[ -s $pidfile ]] && return 0
		sleep 0.1
	done
	die "could not start $*"
}

# A node started again while the others work: an 18.16 node with a few dozen
# Replicated tables took about 3 minutes to answer under a load average of 43
# (the soak of 2026-12-07), so the wait is longer than at "up".
NODE_START_WAIT=${NODE_START_WAIT:-300}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # description timeout-seconds command...
	local what=$1 timeout=$2; shift 2
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			die "$what did not answer within ${timeout}s (logs under $STACK_DIR)"
		fi
		sleep 0.5
	done
}

install_packages() {
	local missing=()
	[[ -x /usr/sbin/clickhouse-server ]] || missing+=(clickhouse-server)
	command -v clickhouse-client >/dev/null || missing+=(clickhouse-client)
	[[ -x $ZK_HOME/bin/zkServer.sh ]] || missing+=(zookeeper)
	[[ -x $PG_BIN/initdb ]] || missing+=(postgresql)
	command -v psql >/dev/null || missing+=(postgresql-client)
	# The example CI workflow's scripts, which TestCIWorkflow runs.
	local tool
	for tool in curl jq unzip; do
		command -v $tool >/dev/null || missing+=($tool)
	done
	# TestStatusPage drives the daemon's status page in Debian's chromium.
	command -v chromium >/dev/null || missing+=(chromium)
	if ((${#missing[@]})); then
		((EUID == 0)) || die "missing packages ${missing[*]}: run as root or install them"
		log "installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	command -v java >/dev/null || die "zookeeper needs java on PATH"
	install_chdb
}

# install_chdb: the npm package holding libchdb.so, and our launcher for it.
chdb_lib() { echo "$STACK_DIR/chdb/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so"; }
install_chdb() {
	mkdir -p "$STACK_DIR/chdb" "$STACK_DIR/bin"
	if [[ ! -s $(chdb_lib) ]]; then
		if ! command -v npm >/dev/null; then
			((EUID == 0)) || die "npm is missing: install Node.js and npm"
			log "installing npm"
			apt-get update -qq
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
		fi
		log "installing $CHDB_PACKAGE (about 180 MB)"
		npm install --prefix "$STACK_DIR/chdb" --no-save --no-audit --no-fund "$CHDB_PACKAGE" >"$STACK_DIR/chdb/npm.log" 2>&1 ||
			die "npm install $CHDB_PACKAGE failed, see $STACK_DIR/chdb/npm.log"
	fi
	local go=${GO:-go}
	command -v "$go" >/dev/null || go=/usr/local/go/bin/go
	(cd "$ROOT" && "$go" build -o "$STACK_DIR/bin/chdbserver" ./internal/stack/chdbserver) ||
		die "could not build internal/stack/chdbserver"
}

modern_up() {
	local dir=$STACK_DIR/ch-modern
	if alive "$dir/pid" && ch_answers "$MODERN_TCP" >/dev/null 2>&1; then return; fi
	if alive "$dir/pid"; then
		wait_for "ClickHouse modern" 60 ch_answers "$MODERN_TCP"
		return
	fi
	mkdir -p "$dir/log"
	(cd "$dir" && spawn "$dir/pid" "$dir/log/stdout" "$STACK_DIR/bin/chdbserver" \
		-lib "$(chdb_lib)" -path "$dir/data" -log "$dir/log/ch.log" -tcp-port "$MODERN_TCP" -http-port "$MODERN_HTTP")
}

# ---------------------------------------------------------------- PostgreSQL
pg_up() {
	local dir=$STACK_DIR/pg
	if pg_answers; then return; fi
	mkdir -p "$dir"
	if [[ ! -f $dir/data/PG_VERSION ]]; then
		# initdb refuses to run as root; the postgres user must be able to reach the folder.
		if ((EUID == 0)); then
			chown -R postgres "$dir"
			su postgres -s /bin/sh -c "$PG_BIN/initdb -D '$dir/data' --auth=trust -U postgres" >"$dir/initdb.log" 2>&1 ||
				die "initdb failed, see $dir/initdb.log (the postgres user needs access to $dir)"
		else
			"$PG_BIN/initdb" -D "$dir/data" --auth=trust -U postgres >"$dir/initdb.log" 2>&1 || die "initdb failed"
		fi
	fi
	local start="$PG_BIN/pg_ctl -D '$dir/data' -o '-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off' -l '$dir/log' -w start"
	if ((EUID == 0)); then su postgres -s /bin/sh -c "$start" >/dev/null; else sh -c "$start" >/dev/null; fi
	wait_for PostgreSQL 30 pg_answers
}
pg_answers() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }
pg_down() {
	local dir=$STACK_DIR/pg mode=${1:-fast}
	[[ -f $dir/data/postmaster.pid ]] || return 0
	local stop="$PG_BIN/pg_ctl -D '$dir/data' -m $mode -w stop"
	if ((EUID == 0)); then su postgres -s /bin/sh -c "$stop" >/dev/null 2>&1 || true; else sh -c "$stop" >/dev/null 2>&1 || true; fi
}

# ----------------------------------------------------------------- ZooKeeper
zk_up() {
	local dir=$STACK_DIR/zk
	if alive "$dir/pid" && zk_answers; then return; fi
	mkdir -p "$dir/data" "$dir/log"
	cat >"$dir/zoo.cfg" <<EOF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,stat
maxClientCnxns=0
EOF
	cp /etc/zookeeper/conf/log4j.properties "$dir/" 2>/dev/null || true
	ZOOCFGDIR=$dir ZOO_LOG_DIR=$dir/log JVMFLAGS="-Xmx256m" \
		spawn "$dir/pid" "$dir/log/stdout" "$ZK_HOME/bin/zkServer.sh" start-foreground "$dir/zoo.cfg"
	wait_for ZooKeeper 60 zk_answers
}
# zk_answers: ZooKeeper serves requests. "ruok" answers imok as soon as the
# process runs, before it has loaded its data; a ClickHouse node started
# then fails its handshake and, with Replicated tables to attach, does not
# start: "stat" says whether it serves.
zk_answers() {
	local reply
	exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" || return 1
	printf stat >&3
	reply=$(timeout 2 cat <&3 || true)
	exec 3>&-
	[[ $reply == *"Mode: "* ]]
}

# ---------------------------------------------------------------- ClickHouse
users_xml() {
	cat <<EOF
<yandex>
  <profiles>
    <default>
      <distributed_ddl_task_timeout>$DDL_TIMEOUT</distributed_ddl_task_timeout>
      <log_queries>1</log_queries>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default/></quotas>
</yandex>
EOF
}

# ch_config DIR TCP HTTP [ISH SHARD REPLICA]: a single node when the last three are absent.
ch_config() {
	local dir=$1 tcp=$2 http=$3 ish=${4:-} shard=${5:-} replica=${6:-}
	cat <<EOF
<yandex>
  <logger><level>warning</level><log>$dir/log/ch.log</log><errorlog>$dir/log/err.log</errorlog><size>100M</size><count>2</count></logger>
  <http_port>$http</http_port>
  <tcp_port>$tcp</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>200</max_concurrent_queries>
  <query_log>
    <database>system</database>
    <table>query_log</table>
    <flush_interval_milliseconds>1000</flush_interval_milliseconds>
  </query_log>
EOF
	if [[ -n $ish ]]; then
		cat <<EOF
  <interserver_http_port>$ish</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <zookeeper><node><host>127.0.0.1</host><port>$ZK_PORT</port></node></zookeeper>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
  <macros><shard>$shard</shard><replica>$replica</replica></macros>
  <remote_servers>
    <$CLUSTER_NAME>
      <shard><internal_replication>true</internal_replication>
        <replica><host>127.0.0.1</host><port>${NODE_TCP[n1]}</port></replica>
        <replica><host>127.0.0.1</host><port>${NODE_TCP[n2]}</port></replica>
      </shard>
      <shard><internal_replication>true</internal_replication>
        <replica><host>127.0.0.1</host><port>${NODE_TCP[n3]}</port></replica>
        <replica><host>127.0.0.1</host><port>${NODE_TCP[n4]}</port></replica>
      </shard>
    </$CLUSTER_NAME>
    <test_shard_localhost>
      <shard><replica><host>localhost</host><port>$tcp</port></replica></shard>
    </test_shard_localhost>
  </remote_servers>
EOF
	else
		# The example cluster that ClickHouse's default config ships, so that
		# cluster detection is exercised against it.
		cat <<EOF
  <remote_servers>
    <test_shard_localhost>
      <shard><replica><host>localhost</host><port>$tcp</port></replica></shard>
    </test_shard_localhost>
  </remote_servers>
EOF
	fi
	echo "</yandex>"
}

ch_answers() { clickhouse-client --host 127.0.0.1 --port "$1" -q 'SELECT 1'; }
ch_version() { clickhouse-client --host 127.0.0.1 --port "$1" -q 'SELECT version()' 2>/dev/null || echo "?"; }

# ch_start NAME TCP HTTP [ISH SHARD REPLICA]
ch_start() {
	local name=$1 tcp=$2
	local dir=$STACK_DIR/ch-$name
	if alive "$dir/pid" && ch_answers "$tcp" >/dev/null 2>&1; then return; fi
	if alive "$dir/pid"; then
		wait_for "ClickHouse $name" 60 ch_answers "$tcp"
		return
	fi
	mkdir -p "$dir/data" "$dir/tmp" "$dir/log" "$dir/format_schemas"
	users_xml >"$dir/users.xml"
	ch_config "$dir" "${@:2}" >"$dir/config.xml"
	(cd "$dir" && spawn "$dir/pid" "$dir/log/stdout" /usr/sbin/clickhouse-server --config-file="$dir/config.xml")
}

node_start() {
	local n=$1
	ch_start "$n" "${NODE_TCP[$n]}" "${NODE_HTTP[$n]}" "${NODE_ISH[$n]}" "${NODE_SHARD[$n]}" "${NODE_REPLICA[$n]}"
}

stop_pid() { # pidfile
	local pidfile=$1 pid
	[[ -f $pidfile ]] || return 0
	pid=$(cat "$pidfile")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
		kill -KILL "$pid" 2>/dev/null || true
		# zkServer.sh start-foreground execs java, but be sure nothing of its group survives.
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
}

write_env() {
	local addrs=()
	for n in "${NODES[@]}"; do addrs+=("127.0.0.1:${NODE_TCP[$n]}"); done
	cat >"$STACK_DIR/env" <<EOF
# Written by internal/stack/stack.sh up. Any variable set in the environment wins over this file.
SHIRATH_PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable
SHIRATH_CH_ADDR=127.0.0.1:$SINGLE_TCP
SHIRATH_CH_MODERN_ADDR=127.0.0.1:$MODERN_TCP
SHIRATH_CLUSTER_NAME=$CLUSTER_NAME
SHIRATH_CLUSTER_ADDRS=$(IFS=,; echo "${addrs[*]}")
SHIRATH_STACK_DIR=$STACK_DIR
EOF
}

cmd_up() {
	install_packages
	mkdir -p "$STACK_DIR"
	chmod 755 "$STACK_DIR"
	pg_up
	zk_up
	ch_start single "$SINGLE_TCP" "$SINGLE_HTTP"
	modern_up
	for n in "${NODES[@]}"; do node_start "$n"; done
	wait_for "ClickHouse single" 90 ch_answers "$SINGLE_TCP"
	wait_for "ClickHouse modern" 90 ch_answers "$MODERN_TCP"
	for n in "${NODES[@]}"; do wait_for "ClickHouse $n" 90 ch_answers "${NODE_TCP[$n]}"; done
	write_env
	log "up: PostgreSQL :$PG_PORT, ClickHouse $(ch_version "$SINGLE_TCP") :$SINGLE_TCP, ClickHouse $(ch_version "$MODERN_TCP") :$MODERN_TCP, ZooKeeper :$ZK_PORT, cluster $CLUSTER_NAME on :${NODE_TCP[n1]}-${NODE_TCP[n4]} (env in $STACK_DIR/env)"
}

cmd_down() {
	for n in "${NODES[@]}"; do stop_pid "$STACK_DIR/ch-$n/pid"; done
	stop_pid "$STACK_DIR/ch-single/pid"
	stop_pid "$STACK_DIR/ch-modern/pid"
	stop_pid "$STACK_DIR/zk/pid"
	pg_down
	log "down"
}

cmd_status() {
	local rc=0
	if pg_answers; then echo "postgres :$PG_PORT up"; else echo "postgres :$PG_PORT down"; rc=1; fi
	if zk_answers 2>/dev/null; then echo "zookeeper :$ZK_PORT up"; else echo "zookeeper :$ZK_PORT down"; rc=1; fi
	local name port
	for name in single modern "${NODES[@]}"; do
		case $name in single) port=$SINGLE_TCP ;; modern) port=$MODERN_TCP ;; *) port=${NODE_TCP[$name]} ;; esac
		if ch_answers "$port" >/dev/null 2>&1; then
			echo "clickhouse $name :$port up, version $(ch_version "$port")"
		else
			echo "clickhouse $name :$port down"
			rc=1
		fi
	done
	return $rc
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
stop-node)
	[[ -n ${NODE_TCP[${2:-}]:-} ]] || die "stop-node needs one of ${NODES[*]}"
	stop_pid "$STACK_DIR/ch-$2/pid"
	;;
start-node)
	[[ -n ${NODE_TCP[${2:-}]:-} ]] || die "start-node needs one of ${NODES[*]}"
	node_start "$2"
	wait_for "ClickHouse $2" "$NODE_START_WAIT" ch_answers "${NODE_TCP[$2]}"
	;;
restart-node)
	# Stops a node and starts it again at once, as a restart of its server does.
	[[ -n ${NODE_TCP[${2:-}]:-} ]] || die "restart-node needs one of ${NODES[*]}"
	stop_pid "$STACK_DIR/ch-$2/pid"
	node_start "$2"
	wait_for "ClickHouse $2" "$NODE_START_WAIT" ch_answers "${NODE_TCP[$2]}"
	;;
zk-stop) stop_pid "$STACK_DIR/zk/pid" ;;
zk-start) zk_up ;;
zk-cli)
	# One zkCli.sh command against the stack's ZooKeeper: zk-cli deleteall /path.
	shift
	ZOO_LOG_DIR=$STACK_DIR/zk/log "$ZK_HOME/bin/zkCli.sh" -server "127.0.0.1:$ZK_PORT" "$@"
	;;
pg-up)
	# A PostgreSQL of its own for a test that stops it: pg-up DIR PORT.
	[[ -n ${2:-} && -n ${3:-} ]] || die "pg-up needs a directory and a port"
	STACK_DIR=$2 PG_PORT=$3 pg_up
	;;
pg-kill)
	# Stops it at once, as a crash would: pg-kill DIR.
	[[ -n ${2:-} ]] || die "pg-kill needs a directory"
	STACK_DIR=$2 pg_down immediate
	;;
*) die "usage: stack.sh up|down|status|stop-node NAME|start-node NAME|restart-node NAME|zk-stop|zk-start|zk-cli CMD...|pg-up DIR PORT|pg-kill DIR" ;;
esac

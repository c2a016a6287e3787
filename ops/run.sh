#!/bin/sh
# `make run`: install what is missing, build, start a controller and one
# local agent on the defaults (SQLite in ./run, the local libvirt daemon),
# then print how to use opsnctl against them. `make stop` stops them.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
RUN=${OPSN_RUN_DIR:-$top/run}
API=${OPSN_API_LISTEN:-127.0.0.1:8443}
AGENTS=${OPSN_AGENT_LISTEN:-127.0.0.1:8444}

ops/deps.sh
make -s all image
ops/libvirt-up.sh
# KVM inside a VM often hangs in the firmware; software emulation always
# works. On real hardware: OPSN_VIRT_TYPE=auto make run.
VIRT=${OPSN_VIRT_TYPE:-qemu}

mkdir -p "$RUN"
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

export OPSN_URL="https://$API"
export OPSN_CA="$RUN/controller/ca.pem"
export OPSN_TOKEN_FILE="$RUN/controller/admin.token"

if running "$RUN/controller.pid"; then
	echo "run: the controller is already running (pid $(cat "$RUN/controller.pid"))"
else
	bin/opsn-controller --data-dir "$RUN/controller" --api-listen "$API" \
	    --agent-listen "$AGENTS" --log-file "$RUN/controller.log" \
	    </dev/null >>"$RUN/controller.log" 2>&1 &
	echo $! > "$RUN/controller.pid"
	i=0
	until bin/opsnctl health >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -gt 100 ] || ! running "$RUN/controller.pid"; then
			echo "run: the controller did not start; see $RUN/controller.log" >&2
			exit 1
		fi
		sleep 0.1
	done
fi

if running "$RUN/agent.pid"; then
	echo "run: the agent is already running (pid $(cat "$RUN/agent.pid"))"
else
	token=""
	if [ ! -f "$RUN/agent/cert.pem" ]; then
		token=$(bin/opsnctl node token)
	fi
	# The host's own name is the controller's (its certificate names
	# it), and a node may not take it: the local hypervisor is HOST-hv.
	name=$(hostname | tr 'A-Z' 'a-z' | tr -c 'a-z0-9.\n-' '-')-hv
	bin/opsn-agent --data-dir "$RUN/agent" --name "$name" \
	    --controller "$AGENTS" ${token:+--join-token "$token"} \
	    --role hypervisor --libvirt-uri qemu:///system --virt-type "$VIRT" \
	    --log-file "$RUN/agent.log" </dev/null >>"$RUN/agent.log" 2>&1 &
	echo $! > "$RUN/agent.pid"
	i=0
	until bin/opsnctl node show "$name" 2>/dev/null | grep -q 'state:.*ready'; do
		i=$((i + 1))
		if [ "$i" -gt 150 ] || ! running "$RUN/agent.pid"; then
			echo "run: the agent did not come up; see $RUN/agent.log" >&2
			exit 1
		fi
		sleep 0.2
	done
fi

if ! bin/opsnctl image show tiny >/dev/null 2>&1; then
	img=build/images/tiny
	bin/opsnctl image add tiny --file $img/disk.qcow2 --kernel $img/vmlinuz \
	    --initrd $img/initrd.img --cmdline "$(cat $img/cmdline)" >/dev/null
fi

bin/opsnctl node list
bin/opsnctl image list
cat <<EOT

opsn is running: controller API on https://$API, agents on $AGENTS.
Logs: $RUN/controller.log and $RUN/agent.log. Stop both with: make stop

Use opsnctl against it:

  export OPSN_URL=https://$API
  export OPSN_CA=$RUN/controller/ca.pem
  export OPSN_TOKEN_FILE=$RUN/controller/admin.token
  bin/opsnctl node list
  bin/opsnctl node token          # a join token for another agent
  bin/opsnctl vm create --name demo --node $name --image tiny \\
      --vcpus 1 --memory 256M --disk 1G --wait
  bin/opsnctl vm console-log demo  # shows OPSN-GUEST-READY demo

The web console is at https://$API/ (its certificate is the controller's
own CA's): make yourself an account and open the link it prints.

  bin/opsnctl user add \$USER --role admin
EOT

#!/bin/sh
# Keep a getty on every console named on the kernel command line
# (console=ttyS0,115200 ...), respawned when it exits. INSECURE=true gives a
# root shell without a login prompt; otherwise root logs in with the hash in
# the host's /etc/getty.shadow (bound at /hostroot/etc), and stays locked
# when there is none.

insecure=${INSECURE:-false}

if [ -f /hostroot/etc/getty.shadow ]; then
	cat /hostroot/etc/getty.shadow >/etc/shadow
fi

# respawn TTY SPEED TERM: run getty on /dev/TTY until the container stops
respawn() {
	while true; do
		if [ "$insecure" = true ]; then
			getty -n -l /bin/sh -L "$2" "$1" "$3"
		else
			getty -L "$2" "$1" "$3"
		fi
		sleep 1
	done
}

seen=
for opt in $(cat /proc/cmdline); do
	case "$opt" in
	console=*) ;;
	*) continue ;;
	esac
	arg=${opt#console=}
	tty=${arg%%,*}
	speed=${arg#*,}
	[ "$speed" = "$arg" ] && speed=115200
	speed=${speed%%[!0-9]*}
	case " $seen " in
	*" $tty "*) continue ;;
	esac
	seen="$seen $tty"
	if [ ! -c "/dev/$tty" ]; then
		echo "getty: /dev/$tty is not a character device, no getty on it" >/dev/console
		continue
	fi
	case "$tty" in
	tty[0-9]*) respawn "$tty" 38400 linux & ;;
	*) respawn "$tty" "$speed" vt100 & ;;
	esac
done

if [ -z "$seen" ]; then
	respawn console 115200 vt100 &
fi
wait

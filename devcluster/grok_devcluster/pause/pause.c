/* The sandbox ("pause") container of every pod on the real node: it holds the pod's namespaces
 * open and does nothing else. As PID 1 of the pod it must exit on SIGINT/SIGTERM (PID 1 has no
 * default signal actions) and reap any orphan reparented to it. Built `gcc -Os -static`. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void leave(int signum) { (void)signum; _exit(0); }

static void reap(int signum) {
    (void)signum;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction stop = {.sa_handler = leave};
    struct sigaction child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGINT, &stop, NULL);
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGCHLD, &child, NULL);
    for (;;) {
        pause();
    }
    return EXIT_FAILURE;
}
